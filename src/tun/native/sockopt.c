// Socket calls Node lacks, for stream links. TCP_CONGESTION: Node has no setsockopt for TCP, and
// Yggdrasil 0.4.7 asks for bbr on every link socket: under random loss a loss-based controller (cubic,
// reno) collapses the outer TCP, and everything tunnelled through it, to a fraction of what bbr keeps.
// sendNow and sendParts: one send(2) or sendmsg(2) of a flush while Node has nothing queued on the
// socket, instead of the trip through Node's Writable stream (issue 11: at idle that trip was ~18%
// of a TUN-to-link hop).
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <node_api.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

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

// Most tails one sendParts call takes (the link flushes before it would hold more).
#define SEND_PARTS_MAX 64

// sendParts(fd, slab: Uint8Array, start, end, cuts: Int32Array, tails: Uint8Array[], count) -> bytes
// sent (possibly fewer) or -errno, as sendNow. One sendmsg(2) of slab[start, end) with tails[i]
// inserted at slab offset cuts[i] (cuts ascending within [start, end]): a flush whose frames' heads
// sit in the link's slab and whose bodies were sealed where the TUN read them (issue 11: no copy
// of each body into the slab). Bad arguments give -EINVAL and send nothing.
napi_value planetd_send_parts(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7], result;
  int32_t fd = -1, start = 0, end = 0, count = 0;
  napi_typedarray_type type;
  size_t slab_len = 0, cuts_len = 0;
  void *slab = NULL, *cuts_data = NULL;
  ssize_t n = -EINVAL;
  struct iovec iov[2 * SEND_PARTS_MAX + 1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 7 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 ||
      napi_get_typedarray_info(env, argv[1], &type, &slab_len, &slab, NULL, NULL) != napi_ok ||
      type != napi_uint8_array || napi_get_value_int32(env, argv[2], &start) != napi_ok ||
      napi_get_value_int32(env, argv[3], &end) != napi_ok || start < 0 || end < start ||
      (size_t)end > slab_len ||
      napi_get_typedarray_info(env, argv[4], &type, &cuts_len, &cuts_data, NULL, NULL) != napi_ok ||
      type != napi_int32_array || napi_get_value_int32(env, argv[6], &count) != napi_ok || count < 0 ||
      count > SEND_PARTS_MAX || (size_t)count > cuts_len)
    goto done;
  const int32_t *cuts = cuts_data;
  int iovs = 0;
  int32_t at = start;
  for (int32_t i = 0; i < count; i++) {
    napi_value tail;
    size_t tail_len = 0;
    void *tail_data = NULL;
    if (cuts[i] < at || cuts[i] > end || napi_get_element(env, argv[5], (uint32_t)i, &tail) != napi_ok ||
        napi_get_typedarray_info(env, tail, &type, &tail_len, &tail_data, NULL, NULL) != napi_ok ||
        type != napi_uint8_array)
      goto done;
    if (cuts[i] > at) iov[iovs++] = (struct iovec){(uint8_t *)slab + at, (size_t)(cuts[i] - at)};
    if (tail_len > 0) iov[iovs++] = (struct iovec){tail_data, tail_len};
    at = cuts[i];
  }
  if (end > at) iov[iovs++] = (struct iovec){(uint8_t *)slab + at, (size_t)(end - at)};
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovs};
  do {
    n = sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) n = -errno;
done:
  napi_create_int32(env, (int32_t)n, &result);
  return result;
}
