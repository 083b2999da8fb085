#ifndef PLANETD_NOTIFY_H
#define PLANETD_NOTIFY_H
#include <node_api.h>
napi_value planetd_notify(napi_env env, napi_callback_info info);
#endif
