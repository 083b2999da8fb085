/*
 * A stream link's reads without Node's Readable stream (issue 11: at idle the trip from libuv's read
 * through onStreamRead, Readable.push and the 'data' event was ~44% of a link-to-TUN hop's CPU
 * samples, and every read got a fresh buffer).
 *
 * streamReaderOpen(fd, buffer, onRead) -> handle
 *   Watches a dup of a connected socket's fd (Node keeps its own fd for writing and closing; the
 *   caller has stopped Node's reading) and on each readable wakeup reads what is ready into `buffer`
 *   (up to its size), then calls onRead(n, errno): n > 0 bytes at buffer[0, n); n = 0 with errno 0
 *   at end of stream, or with the errno of a failed read. After either of those it reads no more.
 * streamReaderStart(handle)  begin watching (idempotent).
 * streamReaderClose(handle)  stop and close the dup (idempotent). The connection ends only once
 *   Node's fd and this one are both closed, so a link closes its reader when it closes.
 */
#include "stream_read.h"
#include "tun.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

typedef struct {
  napi_env env;
  int fd;
  uv_poll_t poll;
  napi_ref cb_ref, buf_ref;
  napi_async_context actx;
  uint8_t *buf;
  size_t buf_len;
  int poll_inited, polling, closed, finalized, poll_closed;
} reader_t;

static void on_poll_closed(uv_handle_t *h) {
  reader_t *r = (reader_t *)h->data;
  r->poll_closed = 1;
  if (r->finalized) free(r);
}

static void cleanup_hook(void *arg);

static void reader_close(reader_t *r, int from_cleanup) {
  if (r->closed) return;
  r->closed = 1;
  if (r->polling) uv_poll_stop(&r->poll);
  r->polling = 0;
  if (r->poll_inited) uv_close((uv_handle_t *)&r->poll, on_poll_closed);
  if (r->fd >= 0) close(r->fd);
  r->fd = -1;
  r->buf = NULL;
  if (from_cleanup) return; /* the references die with the environment */
  napi_remove_env_cleanup_hook(r->env, cleanup_hook, r);
  if (r->cb_ref) napi_delete_reference(r->env, r->cb_ref);
  if (r->buf_ref) napi_delete_reference(r->env, r->buf_ref);
  r->cb_ref = r->buf_ref = NULL;
  if (r->actx) napi_async_destroy(r->env, r->actx);
  r->actx = NULL;
}

static void cleanup_hook(void *arg) { reader_close((reader_t *)arg, 1); }

static void finalize(napi_env env, void *data, void *hint) {
  reader_t *r = (reader_t *)data;
  r->finalized = 1;
  reader_close(r, 0);
  if (!r->poll_inited || r->poll_closed) free(r);
}

static void deliver(reader_t *r, int n, int err) { planetd_call_js(r->env, r->actx, r->cb_ref, n, err); }

/* Buffers handed to JS per wakeup at most, while the socket keeps them full (libuv reads up to 32). */
#define FILLS_PER_WAKEUP 16

/* Fills the buffer with as many reads as the socket has ready and hands it to JS, up to
 * FILLS_PER_WAKEUP times; the end of the stream or an error comes after the bytes before it. */
static void on_readable(uv_poll_t *h, int status, int events) {
  reader_t *r = (reader_t *)h->data;
  int end = 0, err = status < 0 ? -status : 0;
  for (int fill = 0; fill < FILLS_PER_WAKEUP && !end && !err && !r->closed; fill++) {
    size_t off = 0;
    while (off < r->buf_len) {
      size_t want = r->buf_len - off;
      ssize_t n = read(r->fd, r->buf + off, want);
      if (n > 0) {
        off += (size_t)n;
        /* A short read emptied the socket: the level-triggered poll says when more comes, so no
         * read just to hear EAGAIN (one syscall less per wakeup at idle). */
        if ((size_t)n < want) break;
        continue;
      }
      if (n == 0) end = 1;
      else if (errno == EINTR) continue;
      else if (errno != EAGAIN && errno != EWOULDBLOCK) err = errno;
      break;
    }
    if (off > 0) deliver(r, (int)off, 0);
    if (off < r->buf_len) break; /* drained */
  }
  if ((!end && !err) || r->closed) return;
  /* end of stream or an error: nothing more will come */
  uv_poll_stop(&r->poll);
  r->polling = 0;
  deliver(r, 0, err);
}

static reader_t *get_reader(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  reader_t *r = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      napi_get_value_external(env, argv[0], (void **)&r) != napi_ok || r == NULL) {
    napi_throw_type_error(env, NULL, "stream reader: expected a reader handle");
    return NULL;
  }
  return r;
}

napi_value planetd_stream_reader_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], handle, name;
  int32_t fd = -1;
  bool is_buf = false;
  void *buf = NULL;
  size_t buf_len = 0;
  napi_valuetype cb_type = napi_undefined;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0 || napi_is_buffer(env, argv[1], &is_buf) != napi_ok ||
      !is_buf || napi_get_buffer_info(env, argv[1], &buf, &buf_len) != napi_ok || buf_len == 0 ||
      buf_len > INT32_MAX || napi_typeof(env, argv[2], &cb_type) != napi_ok || cb_type != napi_function) {
    napi_throw_type_error(env, NULL, "stream reader: streamReaderOpen(fd, buffer, onRead)");
    return NULL;
  }
  int dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup_fd < 0) {
    napi_throw_error(env, NULL, "stream reader: cannot duplicate the socket");
    return NULL;
  }
  reader_t *r = (reader_t *)calloc(1, sizeof(reader_t));
  if (r == NULL) {
    close(dup_fd);
    napi_throw_error(env, NULL, "stream reader: out of memory");
    return NULL;
  }
  r->env = env;
  r->fd = dup_fd;
  r->buf = (uint8_t *)buf;
  r->buf_len = buf_len;
  napi_add_env_cleanup_hook(env, cleanup_hook, r);
  if (napi_create_reference(env, argv[2], 1, &r->cb_ref) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &r->buf_ref) != napi_ok ||
      napi_create_string_utf8(env, "planetd:stream-read", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, NULL, name, &r->actx) != napi_ok ||
      napi_create_external(env, r, finalize, NULL, &handle) != napi_ok) {
    reader_close(r, 0);
    free(r);
    napi_throw_error(env, NULL, "stream reader: internal N-API call failed");
    return NULL;
  }
  return handle;
}

napi_value planetd_stream_reader_start(napi_env env, napi_callback_info info) {
  reader_t *r = get_reader(env, info);
  if (r == NULL || r->closed || r->polling) return NULL;
  if (!r->poll_inited) {
    uv_loop_t *loop = NULL;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &r->poll, r->fd) != 0) {
      napi_throw_error(env, NULL, "stream reader: cannot watch the socket");
      return NULL;
    }
    r->poll.data = r;
    r->poll_inited = 1;
  }
  if (uv_poll_start(&r->poll, UV_READABLE, on_readable) != 0) {
    napi_throw_error(env, NULL, "stream reader: cannot watch the socket");
    return NULL;
  }
  r->polling = 1;
  return NULL;
}

napi_value planetd_stream_reader_close(napi_env env, napi_callback_info info) {
  reader_t *r = get_reader(env, info);
  if (r != NULL) reader_close(r, 0);
  return NULL;
}
