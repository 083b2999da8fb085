#ifndef PLANETD_OFFLOAD_JS_H
#define PLANETD_OFFLOAD_JS_H
#include <node_api.h>
/* The offload byte work without a TUN, for the unit tests (test/tun-offload.test.ts). */
napi_value planetd_gso_split(napi_env env, napi_callback_info info);
napi_value planetd_gro_coalesce(napi_env env, napi_callback_info info);
napi_value planetd_cut_segments(napi_env env, napi_callback_info info);
/* The data of a typed array of type `want` (its element count in *len), or NULL. */
void *typed_array_of(napi_env env, napi_value v, napi_typedarray_type want, size_t *len);
#endif
