/*
 * TUN offloads (IFF_VNET_HDR): what the kernel's virtio_net_hdr asks of us on reads (complete a
 * partial checksum, cut a TCP super-packet into MSS-sized segments) and what we ask of it on writes
 * (one GSO super-packet for a run of in-order TCP segments of one flow). Pure byte work, no I/O:
 * tun.c does the reads and writes, and the addon exports these for the unit tests.
 */
#ifndef PLANETD_OFFLOAD_H
#define PLANETD_OFFLOAD_H

#include <linux/virtio_net.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of struct virtio_net_hdr in front of every packet read from or written to the TUN. */
#define VNET_HDR_LEN 10
/* IPv6 header; TCP header offsets used below. */
#define IP6_HDR_LEN 40
/* Segments one coalesced write may carry (bounds the iovec). */
#define GRO_MAX_SEGMENTS 64

/* Completes a NEEDS_CSUM checksum: the field at csum_start+csum_offset already holds the
 * pseudo-header sum. Returns 0, or -1 when the offsets lie outside the packet. */
int offload_complete_csum(uint8_t *pkt, size_t len, size_t csum_start, size_t csum_offset);

/* A TCP super-packet being cut into segments, possibly across several read batches. */
typedef struct {
  const uint8_t *pkt; /* the super-packet (IPv6 header first), owned by the caller */
  size_t len;
  size_t l4;     /* offset of the TCP header */
  size_t hdr;    /* l4 + TCP header length: the bytes every segment repeats */
  size_t mss;    /* gso_size: payload bytes per segment */
  size_t next;   /* payload offset (from hdr) of the next segment to produce */
  uint32_t seq;  /* the super-packet's sequence number */
  size_t piece_max; /* 0: cut into single segments; else pieces of whole segments up to this size */
  int active;
} gso_split_t;

/* Validates a GSO_TCPV6 packet and starts splitting it (into single segments; set piece_max after
 * for larger pieces). Returns 0, or -1 if it is malformed. */
int gso_split_init(gso_split_t *s, const struct virtio_net_hdr *h, const uint8_t *pkt, size_t len);

/* Writes the next segment to out (at most room bytes): a complete IPv6/TCP packet with its own
 * payload length, sequence number, flags and full checksum. With piece_max, as many whole segments
 * as fit in piece_max bytes: when that is more than one, *piece_gso = mss and the checksum field is
 * left 0 (whoever writes the piece to a TUN puts the pseudo-header sum there); else *piece_gso = 0.
 * Returns its length, or 0 when it does not fit; clears s->active after the last one. */
size_t gso_split_next(gso_split_t *s, uint8_t *out, size_t room, size_t *piece_gso);

/* Makes a TCPv6 super-packet (no extension headers) carried whole between planetd nodes ready for a
 * GSO write: the pseudo-header sum in its checksum field and the vnet header h. Returns 0, or -1 if
 * the packet is not plain IPv6/TCP with data beyond one gso_size segment. */
int gso_prepare_write(uint8_t *pkt, size_t len, size_t gso_size, struct virtio_net_hdr *h);

/* True when a GSO_TCPV6 packet's payload fits in one gso_size segment: it is an ordinary packet
 * (at an MTU near 64 KiB the kernel's TSO packets are all like this). */
int gso_one_segment(const struct virtio_net_hdr *h, const uint8_t *pkt, size_t len);

/* True for a plain IPv6/TCP packet (no extension headers, lengths consistent) whose checksum is at
 * csum_start/csum_offset as the kernel puts TCP's: what JS may carry with its checksum partial. */
int tcp_csum_partial_plain(const uint8_t *pkt, size_t len, size_t csum_start, size_t csum_offset);

/* A plain IPv6/TCP packet written alone to an offloading TUN: the pseudo-header sum in its checksum
 * field and h set to NEEDS_CSUM, so that the kernel neither verifies nor needs a sum it never gets
 * from planetd peers that skip it (see tun_io.c). Anything else leaves h zero (written as is). */
void tcp_prepare_partial(uint8_t *pkt, size_t len, struct virtio_net_hdr *h);

/* How many packets from packets[i] on (lengths lens[i]...) coalesce into one GSO write: 1 when the
 * packet cannot start or join a run. Only ACK (and PSH on the last) segments of one flow, in
 * sequence, equal MSS but for a shorter last one, identical headers and options, valid checksums. */
size_t gro_run(uint8_t *const *packets, const size_t *lens, size_t count, size_t i);

/* Turns packets[i] into the head of a run of n: IPv6 payload length for the whole run, PSH if the
 * last had it, the pseudo-header sum in the TCP checksum field, and the vnet header to send first. */
void gro_prepare_head(uint8_t *const *packets, const size_t *lens, size_t i, size_t n,
                      struct virtio_net_hdr *h);

#endif
