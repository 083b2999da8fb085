#ifndef PLANETD_TRIM_H
#define PLANETD_TRIM_H
#include <node_api.h>

napi_value planetd_malloc_trim(napi_env env, napi_callback_info info);

#endif
