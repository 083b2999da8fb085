/* The TUN device's state, shared by tun.c (open, configure, lifecycle) and tun_io.c (reads, writes). */
#ifndef PLANETD_TUN_H
#define PLANETD_TUN_H

#include "offload.h"
#include <linux/if.h>
#include <node_api.h>
#include <stdint.h>
#include <uv.h>

/* Largest packet the kernel can hand us: IPv6 header + 65535-byte payload (a GSO super-packet too). */
#define MAX_READ 65575
/* Each packet a read hands to JS has PACKET_HEADROOM bytes before it (before its vnet header, when
 * there is one) and PACKET_TAILROOM after it that no other packet of the batch uses: JS seals the
 * packet where it lies, its session header in front and its tag behind (issue 11: no copy into a
 * session buffer), and the link sends it from there. The batch's packets stay put until the next
 * read, which starts only after JS returned. src/tun/native.ts READ_HEADROOM and READ_TAILROOM. */
#define PACKET_HEADROOM 128
#define PACKET_TAILROOM 16
#define PACKET_GAP (PACKET_HEADROOM + PACKET_TAILROOM)
/* Packets one writeBatch call may carry. */
#define WRITE_BATCH_MAX 256
/* Int32s per packet in the read and write meta arrays: offset, length, gso_size (0: an ordinary packet). */
#define META_STRIDE 3
/* The gso_size a read gives an ordinary IPv6/TCP packet whose checksum field holds only the
 * pseudo-header sum (the kernel skipped the rest: the TUN offers checksum offload). */
#define PARTIAL_CSUM (-1)

enum offload_counter {
  GSO_READS,          /* super-packets read */
  SEGMENTS_PRODUCED,  /* segments cut from them */
  CSUM_COMPLETED,     /* partial checksums completed on ordinary packets */
  OFFLOAD_MALFORMED,  /* reads with a vnet header or GSO packet we refused (dropped) */
  COALESCED_WRITES,   /* GSO writes of more than one segment */
  COALESCED_SEGMENTS, /* segments those carried */
  PIECES_READ,        /* super-packet pieces of several segments handed to JS whole (superPackets) */
  SUPER_WRITES,       /* super-packets from planetd peers written as one GSO write */
  SUPER_CUT,          /* super-packets from planetd peers cut here (the TUN has no offloads) */
  CSUM_LEFT_PARTIAL,  /* TCP packets handed to JS with the kernel's partial checksum (PARTIAL_CSUM) */
  OFFLOAD_COUNTERS
};

typedef struct {
  napi_env env;
  int fd;
  char name[IFNAMSIZ];
  uv_poll_t poll;
  int poll_inited;
  int polling;
  int closed;
  int poll_closed;
  int finalized;
  napi_ref cb_ref;
  napi_ref buf_ref;
  napi_ref meta_ref;
  napi_async_context actx;
  uint8_t *buf;
  size_t buf_len;
  int32_t *meta;
  size_t max_packets;
  int vnet;            /* every read and write carries a virtio_net_hdr */
  int offload_error;   /* 0, -1 (not asked for) or the errno that refused the offloads */
  gso_split_t split;   /* a super-packet (in scratch) not yet wholly cut into the batch */
  size_t piece_max;    /* 0: reads cut super-packets into segments; else into pieces up to this size */
  int partial_csum;    /* reads hand plain TCP packets over with partial checksums (PARTIAL_CSUM) */
  double counters[OFFLOAD_COUNTERS];
  /* Two areas of SCRATCH_BYTES: where a read super-packet waits while it is cut, and where a
   * written one is cut when the TUN has no offloads. */
  uint8_t scratch[];
} tun_t;
#define SCRATCH_BYTES (VNET_HDR_LEN + MAX_READ)

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "TUN: internal N-API call failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

/* The handle (argv[0]) and up to n arguments of a call, missing ones undefined; NULL after throwing. */
tun_t *tun_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv);
/* Calls the JS function cb_ref refers to with (a, b) from a libuv callback; an exception it throws
 * becomes the process's uncaught exception. Shared by the TUN and the stream reader (stream_read.c). */
void planetd_call_js(napi_env env, napi_async_context actx, napi_ref cb_ref, int32_t a, int32_t b);
/* The uv_poll_t callback: reads a batch (cutting super-packets) and hands it to JS. */
void tun_on_readable(uv_poll_t *h, int status, int events);
napi_value tun_js_write(napi_env env, napi_callback_info info);
napi_value tun_js_write_batch(napi_env env, napi_callback_info info);
napi_value tun_js_counters(napi_env env, napi_callback_info info);
napi_value tun_js_offload_error(napi_env env, napi_callback_info info);
napi_value tun_js_super_packets(napi_env env, napi_callback_info info);
napi_value tun_js_complete_checksum(napi_env env, napi_callback_info info);

#endif
