#ifndef PLANETD_SOCKOPT_H
#define PLANETD_SOCKOPT_H
#include <node_api.h>
napi_value planetd_tcp_congestion(napi_env env, napi_callback_info info);
napi_value planetd_send_now(napi_env env, napi_callback_info info);
napi_value planetd_send_parts(napi_env env, napi_callback_info info);
#endif
