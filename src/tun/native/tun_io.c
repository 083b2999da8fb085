/*
 * The TUN's data path: batched reads (super-packets cut into segments when offloads are on) and
 * batched writes (runs of TCP segments coalesced into GSO writes). See tun.c for the JS API.
 */
#include "tun.h"
#include "offload_js.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

void planetd_call_js(napi_env env, napi_async_context actx, napi_ref cb_ref, int32_t a, int32_t b) {
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2], result;
  if (cb_ref && napi_get_reference_value(env, cb_ref, &cb) == napi_ok && cb != NULL) {
    napi_get_global(env, &recv);
    napi_create_int32(env, a, &argv[0]);
    napi_create_int32(env, b, &argv[1]);
    napi_status st = napi_make_callback(env, actx, recv, cb, 2, argv, &result);
    if (st == napi_pending_exception) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void deliver(tun_t *t, int count, int err) { planetd_call_js(t->env, t->actx, t->cb_ref, count, err); }

/* Cuts the pending super-packet into the batch while segments and meta slots fit. */
static void fill_segments(tun_t *t, size_t *off, int *count) {
  while (t->split.active && (size_t)*count < t->max_packets && t->buf_len - *off > PACKET_GAP + PACKET_TAILROOM) {
    size_t gso;
    size_t at = *off + PACKET_GAP;
    size_t n = gso_split_next(&t->split, t->buf + at, t->buf_len - at - PACKET_TAILROOM, &gso);
    if (n == 0) break;
    int32_t *m = t->meta + META_STRIDE * *count;
    m[0] = (int32_t)at;
    m[1] = (int32_t)n;
    m[2] = (int32_t)gso;
    *off = at + n;
    (*count)++;
    t->counters[gso ? PIECES_READ : SEGMENTS_PRODUCED]++;
  }
}

/* A read of n bytes at `at` (= buf + *off + PACKET_GAP) with its virtio_net_hdr: an ordinary packet joins the
 * batch in place (a super-packet of one segment is one: at large MTUs the kernel's are), its
 * checksum completed if the kernel left it partial, or, for plain IPv6/TCP once JS asked for them,
 * left so and marked PARTIAL_CSUM for JS to complete only where the destination needs it; a
 * super-packet of several segments moves to scratch and is cut into the batch from there. */
static void take_offloaded(tun_t *t, uint8_t *at, size_t n, size_t *off, int *count) {
  struct virtio_net_hdr h;
  if (n < VNET_HDR_LEN) {
    t->counters[OFFLOAD_MALFORMED]++;
    return;
  }
  memcpy(&h, at, sizeof h);
  uint8_t *pkt = at + VNET_HDR_LEN;
  size_t len = n - VNET_HDR_LEN;
  if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE || gso_one_segment(&h, pkt, len)) {
    int32_t mark = 0;
    if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      if (t->partial_csum && tcp_csum_partial_plain(pkt, len, h.csum_start, h.csum_offset)) {
        mark = PARTIAL_CSUM;
        t->counters[CSUM_LEFT_PARTIAL]++;
      } else if (offload_complete_csum(pkt, len, h.csum_start, h.csum_offset) != 0) {
        t->counters[OFFLOAD_MALFORMED]++;
        return;
      } else {
        t->counters[CSUM_COMPLETED]++;
      }
    }
    int32_t *m = t->meta + META_STRIDE * *count;
    m[0] = (int32_t)(*off + PACKET_GAP + VNET_HDR_LEN);
    m[1] = (int32_t)len;
    m[2] = mark;
    *off += PACKET_GAP + n;
    (*count)++;
    return;
  }
  t->counters[GSO_READS]++;
  memcpy(t->scratch, pkt, len);
  if (gso_split_init(&t->split, &h, t->scratch, len) != 0) {
    t->counters[OFFLOAD_MALFORMED]++;
    return;
  }
  t->split.piece_max = t->piece_max;
  fill_segments(t, off, count);
}

void tun_on_readable(uv_poll_t *h, int status, int events) {
  (void)events;
  tun_t *t = (tun_t *)h->data;
  if (t->closed) return;
  if (status < 0) {
    uv_poll_stop(&t->poll);
    t->polling = 0;
    deliver(t, 0, -status);
    return;
  }
  size_t room = t->vnet ? VNET_HDR_LEN + MAX_READ : MAX_READ;
  size_t need = PACKET_GAP + room + PACKET_TAILROOM;
  /* One batch per round; another round only while a super-packet is still being cut, since the
   * fd may have nothing left to wake us for it. Each round takes at least one segment. */
  for (;;) {
    size_t off = 0;
    int count = 0;
    int fatal = 0;
    fill_segments(t, &off, &count);
    while (!t->split.active && (size_t)count < t->max_packets && t->buf_len - off >= need) {
      ssize_t n = read(t->fd, t->buf + off + PACKET_GAP, room);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) fatal = errno;
        break;
      }
      if (n == 0) break;
      if (t->vnet) {
        take_offloaded(t, t->buf + off + PACKET_GAP, (size_t)n, &off, &count);
        continue;
      }
      int32_t *m = t->meta + META_STRIDE * count;
      m[0] = (int32_t)(off + PACKET_GAP);
      m[1] = (int32_t)n;
      m[2] = 0;
      off += PACKET_GAP + (size_t)n;
      count++;
    }
    if (fatal) {
      uv_poll_stop(&t->poll);
      t->polling = 0;
      t->split.active = 0;
    }
    if (count > 0 || fatal) deliver(t, count, fatal);
    if (t->closed || !t->split.active) break;
  }
}

napi_value tun_js_write(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  tun_t *t = tun_args(env, info, 2, argv);
  if (t == NULL) return NULL;
  size_t len = 0;
  void *data = typed_array_of(env, argv[1], napi_uint8_array, &len);
  if (data == NULL) {
    napi_throw_type_error(env, NULL, "TUN: packet must be a Uint8Array");
    return NULL;
  }
  int result = 0;
  if (t->closed) {
    result = -EBADF;
  } else {
    struct virtio_net_hdr h;
    memset(&h, 0, sizeof h);
    struct iovec iov[2] = {{&h, VNET_HDR_LEN}, {data, len}};
    ssize_t n;
    do {
      n = writev(t->fd, iov + (t->vnet ? 0 : 1), t->vnet ? 2 : 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0) result = -errno;
  }
  CHECK(napi_create_int32(env, result, &out));
  return out;
}

/* Writes packets[i..i+n) as one writev: a coalesced run (a GSO super-packet: the head whole, the
 * others' payloads after it) or, for n = 1, one packet behind a vnet header when there is one (a
 * plain IPv6/TCP packet as CHECKSUM_PARTIAL: see tcp_prepare_partial). */
static int write_run(tun_t *t, uint8_t *const *packets, const size_t *lens, size_t i, size_t n) {
  struct virtio_net_hdr h;
  memset(&h, 0, sizeof h);
  if (n > 1) gro_prepare_head(packets, lens, i, n, &h);
  else if (t->vnet) tcp_prepare_partial(packets[i], lens[i], &h);
  struct iovec iov[GRO_MAX_SEGMENTS + 1];
  int iovcnt = 0;
  if (t->vnet) iov[iovcnt++] = (struct iovec){&h, VNET_HDR_LEN};
  iov[iovcnt++] = (struct iovec){packets[i], lens[i]};
  for (size_t k = 1; k < n; k++)
    iov[iovcnt++] = (struct iovec){packets[i + k] + h.hdr_len, lens[i + k] - h.hdr_len};
  ssize_t w;
  do {
    w = writev(t->fd, iov, iovcnt);
  } while (w < 0 && errno == EINTR);
  return w < 0 ? -1 : 0;
}

/* A super-packet a planetd peer sent whole: one GSO write, or cut here into segments (each with its
 * full checksum) when the TUN has no offloads. */
static int write_super(tun_t *t, uint8_t *pkt, size_t len, size_t gso) {
  struct virtio_net_hdr h;
  ssize_t w;
  if (t->vnet) {
    if (gso_prepare_write(pkt, len, gso, &h) != 0) return -1;
    struct iovec iov[2] = {{&h, VNET_HDR_LEN}, {pkt, len}};
    do {
      w = writev(t->fd, iov, 2);
    } while (w < 0 && errno == EINTR);
    if (w < 0) return -1;
    t->counters[SUPER_WRITES]++;
    return 0;
  }
  memset(&h, 0, sizeof h);
  h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
  h.gso_size = (uint16_t)gso;
  gso_split_t s;
  if (gso_split_init(&s, &h, pkt, len) != 0) return -1;
  uint8_t *segment = t->scratch + SCRATCH_BYTES;
  int failed = 0;
  while (s.active) {
    size_t piece_gso;
    size_t n = gso_split_next(&s, segment, SCRATCH_BYTES, &piece_gso);
    if (n == 0) return -1;
    do {
      w = write(t->fd, segment, n);
    } while (w < 0 && errno == EINTR);
    if (w < 0) failed = 1;
  }
  t->counters[SUPER_CUT]++;
  return failed ? -1 : 0;
}

napi_value tun_js_write_batch(napi_env env, napi_callback_info info) {
  napi_value argv[4], out;
  tun_t *t = tun_args(env, info, 4, argv);
  if (t == NULL) return NULL;
  size_t buf_len = 0, meta_len = 0;
  int32_t count = 0;
  uint8_t *buf = (uint8_t *)typed_array_of(env, argv[1], napi_uint8_array, &buf_len);
  const int32_t *meta = (const int32_t *)typed_array_of(env, argv[2], napi_int32_array, &meta_len);
  if (buf == NULL || meta == NULL || napi_get_value_int32(env, argv[3], &count) != napi_ok || count < 0 ||
      count > WRITE_BATCH_MAX || (size_t)count * META_STRIDE > meta_len) {
    napi_throw_type_error(env, NULL, "TUN: writeBatch(handle, buffer, meta: Int32Array, count <= 256)");
    return NULL;
  }
  uint8_t *packets[WRITE_BATCH_MAX];
  size_t lens[WRITE_BATCH_MAX];
  int32_t gso[WRITE_BATCH_MAX];
  for (int32_t i = 0; i < count; i++) {
    const int32_t *m = meta + META_STRIDE * i;
    if (m[0] < 0 || m[1] < 0 || (size_t)m[0] + (size_t)m[1] > buf_len || m[2] < 0 || m[2] > 65535) {
      napi_throw_range_error(env, NULL, "TUN: writeBatch: a packet lies outside the buffer");
      return NULL;
    }
    packets[i] = buf + m[0];
    lens[i] = (size_t)m[1];
    gso[i] = m[2];
  }
  int written = 0;
  size_t ordinary_end = 0; /* packets before this have no gso_size: only those form coalesced runs */
  for (size_t i = 0; i < (size_t)count && !t->closed;) {
    if (ordinary_end <= i) {
      ordinary_end = i;
      while (ordinary_end < (size_t)count && gso[ordinary_end] == 0) ordinary_end++;
    }
    if (gso[i] != 0) {
      if (write_super(t, packets[i], lens[i], (size_t)gso[i]) == 0) written++;
      i++;
      continue;
    }
    size_t n = t->vnet ? gro_run(packets, lens, ordinary_end, i) : 1;
    if (write_run(t, packets, lens, i, n) == 0) {
      written += (int)n;
      if (n > 1) {
        t->counters[COALESCED_WRITES]++;
        t->counters[COALESCED_SEGMENTS] += (double)n;
      }
    }
    i += n;
  }
  CHECK(napi_create_int32(env, written, &out));
  return out;
}

napi_value tun_js_counters(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  tun_t *t = tun_args(env, info, 2, argv);
  if (t == NULL) return NULL;
  size_t len = 0;
  void *data = typed_array_of(env, argv[1], napi_float64_array, &len);
  if (data == NULL) {
    napi_throw_type_error(env, NULL, "TUN: counters(handle, Float64Array)");
    return NULL;
  }
  if (len > OFFLOAD_COUNTERS) len = OFFLOAD_COUNTERS;
  memcpy(data, t->counters, len * sizeof(double));
  return NULL;
}

napi_value tun_js_offload_error(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  tun_t *t = tun_args(env, info, 1, argv);
  if (t == NULL) return NULL;
  CHECK(napi_create_int32(env, t->offload_error, &out));
  return out;
}

napi_value tun_js_super_packets(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  tun_t *t = tun_args(env, info, 3, argv);
  if (t == NULL) return NULL;
  int32_t max = 0;
  bool partial = false;
  if (napi_get_value_int32(env, argv[1], &max) != napi_ok || max < 0 || max > MAX_READ) {
    napi_throw_range_error(env, NULL, "TUN: superPackets(handle, maxBytes in [0, 65575], partialChecksums)");
    return NULL;
  }
  napi_get_value_bool(env, argv[2], &partial); /* undefined: false */
  t->piece_max = (size_t)max;
  t->partial_csum = partial;
  return NULL;
}

napi_value tun_js_complete_checksum(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  size_t len = 0;
  uint8_t *pkt = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
      (pkt = (uint8_t *)typed_array_of(env, argv[0], napi_uint8_array, &len)) == NULL) {
    napi_throw_type_error(env, NULL, "TUN: completeChecksum(packet: Uint8Array)");
    return NULL;
  }
  int ok = tcp_csum_partial_plain(pkt, len, IP6_HDR_LEN, 16) &&
           offload_complete_csum(pkt, len, IP6_HDR_LEN, 16) == 0;
  CHECK(napi_get_boolean(env, ok, &out));
  return out;
}
