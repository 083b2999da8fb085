/*
 * TUN offloads: checksums, TCP segmentation of read super-packets, and coalescing of written
 * segments. See offload.h. Everything here trusts only what it has checked: a malformed
 * virtio_net_hdr or packet is refused (-1 / a run of 1), never read past its end.
 */
#include "offload.h"

#include <string.h>

#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80
#define PROTO_TCP 6

static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t fold(uint64_t a) {
  while (a >> 16) a = (a & 0xffff) + (a >> 16);
  return (uint32_t)a;
}

/* Adds n bytes (starting at an even offset of the summed data) to a one's-complement sum of
 * big-endian 16-bit words. The bulk is summed in native order 8 bytes at a time (RFC 1071: the
 * sum is byte-order independent up to one final swap). */
static uint64_t sum_bytes(uint64_t acc, const uint8_t *p, size_t n) {
  uint64_t native = 0;
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    native += (w & 0xffffffffu) + (w >> 32);
    p += 8;
    n -= 8;
  }
  uint32_t f = fold(native);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  f = ((f & 0xff) << 8) | (f >> 8);
#endif
  acc += f;
  while (n >= 2) {
    acc += be16(p);
    p += 2;
    n -= 2;
  }
  if (n) acc += (uint32_t)p[0] << 8;
  return acc;
}

/* RFC 8200 8.1: source, destination, upper-layer length, next header (TCP). */
static uint64_t pseudo_sum(const uint8_t *ip6, uint32_t l4_len) {
  return sum_bytes(0, ip6 + 8, 32) + (l4_len >> 16) + (l4_len & 0xffff) + PROTO_TCP;
}

int offload_complete_csum(uint8_t *pkt, size_t len, size_t csum_start, size_t csum_offset) {
  if (csum_start >= len || csum_start + csum_offset + 2 > len) return -1;
  uint32_t c = ~fold(sum_bytes(0, pkt + csum_start, len - csum_start)) & 0xffff;
  /* A UDP checksum of 0 means "none"; its one's-complement twin says the same sum. */
  if (c == 0) c = 0xffff;
  put16(pkt + csum_start + csum_offset, c);
  return 0;
}

int gso_split_init(gso_split_t *s, const struct virtio_net_hdr *h, const uint8_t *pkt, size_t len) {
  s->active = 0;
  if ((h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) != VIRTIO_NET_HDR_GSO_TCPV6) return -1;
  if (len < IP6_HDR_LEN + 20 || (pkt[0] >> 4) != 6 || h->gso_size == 0) return -1;
  size_t l4 = (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) ? h->csum_start : IP6_HDR_LEN;
  if (l4 < IP6_HDR_LEN || l4 + 20 > len) return -1;
  if (l4 == IP6_HDR_LEN && pkt[6] != PROTO_TCP) return -1;
  size_t tcp_len = (size_t)(pkt[l4 + 12] >> 4) * 4;
  if (tcp_len < 20 || l4 + tcp_len > len) return -1;
  s->pkt = pkt;
  s->len = len;
  s->l4 = l4;
  s->hdr = l4 + tcp_len;
  s->mss = h->gso_size;
  s->next = 0;
  s->seq = be32(pkt + l4 + 4);
  s->piece_max = 0;
  s->active = 1;
  return 0;
}

size_t gso_split_next(gso_split_t *s, uint8_t *out, size_t room, size_t *piece_gso) {
  if (!s->active) return 0;
  size_t payload = s->len - s->hdr;
  size_t take = payload - s->next;
  size_t per_piece = s->mss;
  if (s->piece_max > s->hdr + s->mss) per_piece = (s->piece_max - s->hdr) / s->mss * s->mss;
  if (take > per_piece) take = per_piece;
  *piece_gso = take > s->mss ? s->mss : 0;
  size_t seg_len = s->hdr + take;
  if (seg_len > room) return 0;
  int first = s->next == 0;
  int last = s->next + take >= payload;
  memcpy(out, s->pkt, s->hdr);
  memcpy(out + s->hdr, s->pkt + s->hdr + s->next, take);
  put16(out + 4, (uint32_t)(seg_len - IP6_HDR_LEN));
  uint8_t *tcp = out + s->l4;
  put32(tcp + 4, s->seq + (uint32_t)s->next);
  /* CWR answers one congestion signal: the first segment carries it; FIN and PSH end the data. */
  if (!first) tcp[13] &= (uint8_t)~TCP_CWR;
  if (!last) tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
  tcp[16] = tcp[17] = 0;
  uint32_t tcp_bytes = (uint32_t)(seg_len - s->l4);
  if (*piece_gso == 0) put16(tcp + 16, ~fold(sum_bytes(pseudo_sum(out, tcp_bytes), tcp, tcp_bytes)) & 0xffff);
  s->next += take;
  if (last) s->active = 0;
  return seg_len;
}

/* Plain IPv6/TCP: version 6, next header TCP, the payload length matching, a whole TCP header. */
static int run_tcp_plain(const uint8_t *p, size_t len) {
  if (len < IP6_HDR_LEN + 20 || (p[0] >> 4) != 6 || p[6] != PROTO_TCP) return 0;
  if (be16(p + 4) != len - IP6_HDR_LEN) return 0;
  size_t tcp_len = (size_t)(p[IP6_HDR_LEN + 12] >> 4) * 4;
  return tcp_len >= 20 && IP6_HDR_LEN + tcp_len <= len;
}

/* TCP header length of a packet that may join a run: plain IPv6 + TCP (no extension headers),
 * consistent lengths, data to carry, flags ACK or ACK|PSH. 0 when it may not. */
static size_t run_tcp_len(const uint8_t *p, size_t len) {
  if (len < IP6_HDR_LEN + 20 || (p[0] >> 4) != 6 || p[6] != PROTO_TCP) return 0;
  if (be16(p + 4) != len - IP6_HDR_LEN) return 0;
  size_t tcp_len = (size_t)(p[IP6_HDR_LEN + 12] >> 4) * 4;
  if (tcp_len < 20 || IP6_HDR_LEN + tcp_len >= len) return 0;
  uint8_t flags = p[IP6_HDR_LEN + 13];
  if ((flags & (uint8_t)~TCP_PSH) != TCP_ACK) return 0;
  return tcp_len;
}

/* The kernel will trust the checksum it computes for a run, so each segment's own must hold. */
static int tcp_csum_ok(const uint8_t *p, size_t len) {
  uint32_t tcp_bytes = (uint32_t)(len - IP6_HDR_LEN);
  return fold(sum_bytes(pseudo_sum(p, tcp_bytes), p + IP6_HDR_LEN, tcp_bytes)) == 0xffff;
}

size_t gro_run(uint8_t *const *packets, const size_t *lens, size_t count, size_t i) {
  const uint8_t *head = packets[i];
  size_t head_len = lens[i];
  size_t tcp_len = run_tcp_len(head, head_len);
  if (tcp_len == 0 || (head[IP6_HDR_LEN + 13] & TCP_PSH)) return 1;
  size_t mss = head_len - IP6_HDR_LEN - tcp_len;
  size_t ip_payload = head_len - IP6_HDR_LEN;
  uint32_t seq = be32(head + IP6_HDR_LEN + 4) + (uint32_t)mss;
  const uint8_t *th = head + IP6_HDR_LEN;
  size_t n = 1;
  for (size_t j = i + 1; j < count && n < GRO_MAX_SEGMENTS; j++) {
    const uint8_t *p = packets[j];
    size_t len = lens[j];
    if (run_tcp_len(p, len) != tcp_len) break;
    const uint8_t *pt = p + IP6_HDR_LEN;
    size_t payload = len - IP6_HDR_LEN - tcp_len;
    /* Same flow and IPv6 fields (version, class, label, hop limit, addresses); next in sequence;
     * same ack, window, urgent pointer and options. */
    if (memcmp(head, p, 4) != 0 || memcmp(head + 6, p + 6, 34) != 0) break;
    if (memcmp(th, pt, 4) != 0 || be32(pt + 4) != seq || memcmp(th + 8, pt + 8, 5) != 0) break;
    if (memcmp(th + 14, pt + 14, 2) != 0 || memcmp(th + 18, pt + 18, tcp_len - 18) != 0) break;
    if (payload > mss || ip_payload + payload > 65535) break;
    if (n == 1 && !tcp_csum_ok(head, head_len)) return 1;
    if (!tcp_csum_ok(p, len)) break;
    ip_payload += payload;
    seq += (uint32_t)payload;
    n++;
    if (payload < mss || (pt[13] & TCP_PSH)) break; /* a short or pushed segment ends the run */
  }
  return n;
}

void gro_prepare_head(uint8_t *const *packets, const size_t *lens, size_t i, size_t n,
                      struct virtio_net_hdr *h) {
  uint8_t *head = packets[i];
  size_t tcp_len = (size_t)(head[IP6_HDR_LEN + 12] >> 4) * 4;
  size_t ip_payload = lens[i] - IP6_HDR_LEN;
  for (size_t k = 1; k < n; k++) ip_payload += lens[i + k] - IP6_HDR_LEN - tcp_len;
  put16(head + 4, (uint32_t)ip_payload);
  if (packets[i + n - 1][IP6_HDR_LEN + 13] & TCP_PSH) head[IP6_HDR_LEN + 13] |= TCP_PSH;
  /* CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum; the kernel adds the rest. */
  put16(head + IP6_HDR_LEN + 16, fold(pseudo_sum(head, (uint32_t)ip_payload)));
  memset(h, 0, sizeof *h);
  h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h->gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
  h->hdr_len = (uint16_t)(IP6_HDR_LEN + tcp_len);
  h->gso_size = (uint16_t)(lens[i] - IP6_HDR_LEN - tcp_len);
  h->csum_start = IP6_HDR_LEN;
  h->csum_offset = 16;
}

int gso_prepare_write(uint8_t *pkt, size_t len, size_t gso_size, struct virtio_net_hdr *h) {
  if (len < IP6_HDR_LEN + 20 || (pkt[0] >> 4) != 6 || pkt[6] != PROTO_TCP || gso_size == 0) return -1;
  if (be16(pkt + 4) != len - IP6_HDR_LEN) return -1;
  size_t tcp_len = (size_t)(pkt[IP6_HDR_LEN + 12] >> 4) * 4;
  if (tcp_len < 20 || IP6_HDR_LEN + tcp_len + gso_size >= len) return -1;
  put16(pkt + IP6_HDR_LEN + 16, fold(pseudo_sum(pkt, (uint32_t)(len - IP6_HDR_LEN))));
  memset(h, 0, sizeof *h);
  h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h->gso_type = VIRTIO_NET_HDR_GSO_TCPV6;
  /* The kernel copies CWR onto every segment it cuts unless told the flag is ECN's. */
  if (pkt[IP6_HDR_LEN + 13] & TCP_CWR) h->gso_type |= VIRTIO_NET_HDR_GSO_ECN;
  h->hdr_len = (uint16_t)(IP6_HDR_LEN + tcp_len);
  h->gso_size = (uint16_t)gso_size;
  h->csum_start = IP6_HDR_LEN;
  h->csum_offset = 16;
  return 0;
}

int gso_one_segment(const struct virtio_net_hdr *h, const uint8_t *pkt, size_t len) {
  if ((h->gso_type & ~VIRTIO_NET_HDR_GSO_ECN) != VIRTIO_NET_HDR_GSO_TCPV6 || h->gso_size == 0) return 0;
  if (len < IP6_HDR_LEN + 20 || (pkt[0] >> 4) != 6 || pkt[6] != PROTO_TCP) return 0;
  size_t tcp_len = (size_t)(pkt[IP6_HDR_LEN + 12] >> 4) * 4;
  return tcp_len >= 20 && IP6_HDR_LEN + tcp_len <= len && len - IP6_HDR_LEN - tcp_len <= h->gso_size;
}

int tcp_csum_partial_plain(const uint8_t *pkt, size_t len, size_t csum_start, size_t csum_offset) {
  return csum_start == IP6_HDR_LEN && csum_offset == 16 && run_tcp_plain(pkt, len);
}

void tcp_prepare_partial(uint8_t *pkt, size_t len, struct virtio_net_hdr *h) {
  memset(h, 0, sizeof *h);
  if (!run_tcp_plain(pkt, len)) return;
  put16(pkt + IP6_HDR_LEN + 16, fold(pseudo_sum(pkt, (uint32_t)(len - IP6_HDR_LEN))));
  h->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  h->csum_start = IP6_HDR_LEN;
  h->csum_offset = 16;
}
