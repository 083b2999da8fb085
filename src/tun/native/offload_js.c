/*
 * gsoSplit(input, out, meta) -> count | -1
 *   input = virtio_net_hdr + packet as read from an offloading TUN; the segments (or the packet,
 *   its checksum completed, when it is not GSO) land back to back in out, meta[2i] = offset,
 *   meta[2i+1] = length. -1: a malformed GSO packet, or out/meta too small.
 * cutSegments(packet, gsoSize, out, meta) -> count | -1
 *   A TCPv6 super-packet without a vnet header (as planetd peers carry them) cut into gsoSize
 *   segments with full checksums, laid out as gsoSplit's; for NativeTun.segment.
 * groCoalesce(input, meta, count, out, outMeta) -> writes
 *   The packets meta describes in input, as tun_io.c writes them to an offloading TUN: each write
 *   (virtio_net_hdr + head + the payloads joined to it, or a lone packet) back to back in out, outMeta[2i] = offset, [2i+1] = length.
 *   input is modified as the write path modifies it (run heads rewritten). -1: out too small.
 */
#include "offload_js.h"
#include "offload.h"

#include <string.h>

void *typed_array_of(napi_env env, napi_value v, napi_typedarray_type want, size_t *len) {
  napi_typedarray_type type;
  bool is_ta = false;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return NULL;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != want) return NULL;
  return p;
}

static int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  *data = (uint8_t *)typed_array_of(env, v, napi_uint8_array, len);
  return *data == NULL ? -1 : 0;
}

static int get_meta(napi_env env, napi_value v, int32_t **meta, size_t *len) {
  *meta = (int32_t *)typed_array_of(env, v, napi_int32_array, len);
  return *meta == NULL ? -1 : 0;
}

static napi_value int_result(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

/* Cuts a GSO packet into single segments back to back in out (meta: offset, length pairs).
 * The number of segments, or -1 if it is malformed or out/meta are too small. */
static int split_all(const struct virtio_net_hdr *h, const uint8_t *pkt, size_t len, uint8_t *out,
                     size_t out_len, int32_t *meta, size_t meta_len) {
  gso_split_t s;
  if (gso_split_init(&s, h, pkt, len) != 0) return -1;
  size_t off = 0, count = 0;
  while (s.active) {
    if (2 * count + 2 > meta_len) return -1;
    size_t piece_gso;
    size_t n = gso_split_next(&s, out + off, out_len - off, &piece_gso);
    if (n == 0) return -1;
    meta[2 * count] = (int32_t)off;
    meta[2 * count + 1] = (int32_t)n;
    off += n;
    count++;
  }
  return (int)count;
}

napi_value planetd_gso_split(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  uint8_t *in, *out;
  size_t in_len, out_len, meta_len;
  int32_t *meta;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3 ||
      get_bytes(env, argv[0], &in, &in_len) || get_bytes(env, argv[1], &out, &out_len) ||
      get_meta(env, argv[2], &meta, &meta_len)) {
    napi_throw_type_error(env, NULL, "gsoSplit(input: Uint8Array, out: Uint8Array, meta: Int32Array)");
    return NULL;
  }
  if (in_len < VNET_HDR_LEN) return int_result(env, -1);
  struct virtio_net_hdr h;
  memcpy(&h, in, sizeof h);
  uint8_t *pkt = in + VNET_HDR_LEN;
  size_t len = in_len - VNET_HDR_LEN;
  if (h.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
    if (len > out_len || meta_len < 2) return int_result(env, -1);
    memcpy(out, pkt, len);
    if ((h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && offload_complete_csum(out, len, h.csum_start, h.csum_offset))
      return int_result(env, -1);
    meta[0] = 0;
    meta[1] = (int32_t)len;
    return int_result(env, 1);
  }
  return int_result(env, split_all(&h, pkt, len, out, out_len, meta, meta_len));
}

napi_value planetd_cut_segments(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  uint8_t *pkt, *out;
  size_t len, out_len, meta_len;
  int32_t *meta, gso = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 4 ||
      get_bytes(env, argv[0], &pkt, &len) || napi_get_value_int32(env, argv[1], &gso) != napi_ok ||
      gso <= 0 || gso > 65535 || get_bytes(env, argv[2], &out, &out_len) ||
      get_meta(env, argv[3], &meta, &meta_len)) {
    napi_throw_type_error(env, NULL, "cutSegments(packet: Uint8Array, gsoSize, out: Uint8Array, meta: Int32Array)");
    return NULL;
  }
  struct virtio_net_hdr h;
  memset(&h, 0, sizeof h);
  h.gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
  h.gso_size = (uint16_t)gso;
  return int_result(env, split_all(&h, pkt, len, out, out_len, meta, meta_len));
}

napi_value planetd_gro_coalesce(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  uint8_t *in, *out;
  size_t in_len, out_len, meta_len, out_meta_len;
  int32_t *meta, *out_meta, count = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5 ||
      get_bytes(env, argv[0], &in, &in_len) || get_meta(env, argv[1], &meta, &meta_len) ||
      napi_get_value_int32(env, argv[2], &count) != napi_ok || count < 0 || count > GRO_MAX_SEGMENTS * 4 ||
      (size_t)count * 2 > meta_len || get_bytes(env, argv[3], &out, &out_len) ||
      get_meta(env, argv[4], &out_meta, &out_meta_len)) {
    napi_throw_type_error(env, NULL,
                          "groCoalesce(input: Uint8Array, meta: Int32Array, count, out: Uint8Array, outMeta: Int32Array)");
    return NULL;
  }
  uint8_t *packets[GRO_MAX_SEGMENTS * 4];
  size_t lens[GRO_MAX_SEGMENTS * 4];
  for (int32_t i = 0; i < count; i++) {
    if (meta[2 * i] < 0 || meta[2 * i + 1] < 0 || (size_t)meta[2 * i] + (size_t)meta[2 * i + 1] > in_len) {
      napi_throw_range_error(env, NULL, "groCoalesce: a packet lies outside the input");
      return NULL;
    }
    packets[i] = in + meta[2 * i];
    lens[i] = (size_t)meta[2 * i + 1];
  }
  size_t off = 0, writes = 0;
  for (size_t i = 0; i < (size_t)count;) {
    size_t n = gro_run(packets, lens, (size_t)count, i);
    struct virtio_net_hdr h;
    memset(&h, 0, sizeof h);
    if (n > 1) gro_prepare_head(packets, lens, i, n, &h);
    else tcp_prepare_partial(packets[i], lens[i], &h);
    size_t tcp_hdr = n > 1 ? h.hdr_len : 0;
    size_t total = VNET_HDR_LEN + lens[i];
    for (size_t k = 1; k < n; k++) total += lens[i + k] - tcp_hdr;
    if (off + total > out_len || 2 * writes + 2 > out_meta_len) return int_result(env, -1);
    out_meta[2 * writes] = (int32_t)off;
    out_meta[2 * writes + 1] = (int32_t)total;
    memcpy(out + off, &h, VNET_HDR_LEN);
    memcpy(out + off + VNET_HDR_LEN, packets[i], lens[i]);
    size_t at = off + VNET_HDR_LEN + lens[i];
    for (size_t k = 1; k < n; k++) {
      memcpy(out + at, packets[i + k] + tcp_hdr, lens[i + k] - tcp_hdr);
      at += lens[i + k] - tcp_hdr;
    }
    off += total;
    writes++;
    i += n;
  }
  return int_result(env, (int)writes);
}
