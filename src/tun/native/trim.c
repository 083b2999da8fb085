// malloc_trim(0): after a burst of traffic the C heap keeps the pages of freed buffers (Node's
// external memory, OpenSSL's, ours) and RSS stays up long after V8 has let go of them; asking glibc
// to return them is the one thing that brings the daemon back near its idle size. Not glibc
// (musl): nothing to do.
#include <node_api.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "trim.h"

// mallocTrim() -> true when memory was returned to the system.
napi_value planetd_malloc_trim(napi_env env, napi_callback_info info) {
  int released = 0;
#ifdef __GLIBC__
  released = malloc_trim(0);
#endif
  napi_value result;
  napi_get_boolean(env, released != 0, &result);
  return result;
}
