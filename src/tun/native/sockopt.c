// Socket calls Node lacks, for stream links. TCP_CONGESTION: Node has no setsockopt for TCP, and
// Yggdrasil 0.4.7 asks for bbr on every link socket: under random loss a loss-based controller (cubic,
// reno) collapses the outer TCP, and everything tunnelled through it, to a fraction of what bbr keeps.
// sendNow: one send(2) of a flush while Node has nothing queued on the socket, instead of the trip
// through Node's Writable stream (issue 11: at idle that trip was ~18% of a TUN-to-link hop).
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "sockopt.h"

// tcpCongestion(fd, name) -> 0 or an errno; nothing is thrown, the link works either way.
napi_value planetd_tcp_congestion(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  char name[32];
  size_t name_len = 0;
  int32_t fd = -1;
  int err = EINVAL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 2 &&
      napi_get_value_int32(env, argv[0], &fd) == napi_ok && fd >= 0 &&
      napi_get_value_string_utf8(env, argv[1], name, sizeof name, &name_len) == napi_ok && name_len > 0) {
    err = setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, (socklen_t)name_len) == 0 ? 0 : errno;
  }
  napi_create_int32(env, err, &result);
  return result;
}

// sendNow(fd, bytes: Uint8Array) -> bytes sent (possibly fewer) or -errno (-EAGAIN: the socket buffer
// is full). Never blocks, never raises SIGPIPE; the caller hands whatever is left to Node.
napi_value planetd_send_now(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int32_t fd = -1;
  napi_typedarray_type type;
  size_t len = 0;
  void *data = NULL;
  ssize_t n = -EINVAL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 2 &&
      napi_get_value_int32(env, argv[0], &fd) == napi_ok && fd >= 0 &&
      napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) == napi_ok &&
      type == napi_uint8_array && len <= INT32_MAX) {
    do {
      n = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) n = -errno;
  }
  napi_create_int32(env, (int32_t)n, &result);
  return result;
}
