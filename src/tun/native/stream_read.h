#ifndef PLANETD_STREAM_READ_H
#define PLANETD_STREAM_READ_H
#include <node_api.h>
#include <stdint.h>
napi_value planetd_stream_reader_open(napi_env env, napi_callback_info info);
napi_value planetd_stream_reader_start(napi_env env, napi_callback_info info);
napi_value planetd_stream_reader_close(napi_env env, napi_callback_info info);
#endif
