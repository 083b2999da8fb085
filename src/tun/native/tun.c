/*
 * planetd_tun: a Linux TUN device for Node.js (N-API + libuv).
 *
 * open(name, mtu, address16, prefixLength, buffer, meta, onBatch, offload) -> handle
 *   Creates the interface (IFF_TUN | IFF_NO_PI), sets its MTU, adds address/prefixLength and brings it up.
 *   "auto" (or "") lets the kernel pick tunN. Throws an Error with an operator-readable message.
 *   offload: also IFF_VNET_HDR with checksum and TCPv6 segmentation offloads (see offload.h); if the
 *   kernel refuses them the device is reopened plain and offloadError(handle) says why.
 * start(handle)        begin reading: on each readable wakeup up to meta.length/3 packets are read into
 *                      `buffer`; meta[3i] = offset, meta[3i+1] = length, meta[3i+2] = gso_size (0 but for
 *                      super-packet pieces); then onBatch(count, errno) is called once (errno != 0 only
 *                      for a fatal read error, after which reading stops). With offloads, super-packets
 *                      arrive cut into MTU-sized segments, or after superPackets into larger pieces.
 * superPackets(handle, maxBytes, partialChecksums) reads hand super-packets over in pieces of whole
 *                      segments up to maxBytes with their gso_size (0: cut into single segments, the
 *                      default); with partialChecksums, plain IPv6/TCP packets keep the kernel's
 *                      partial checksum and get gso_size -1 (PARTIAL_CSUM) instead of a full one.
 * completeChecksum(packet) completes such a packet's TCP checksum in place; false if it is not one.
 * write(handle, bytes) write one packet; returns 0 or a negative errno (EAGAIN = kernel queue full).
 * writeBatch(handle, buffer, meta, count) write count packets (meta as for reads) in one call: a
 *                      super-packet (gso_size > 0) as one GSO write (or cut here without offloads), runs
 *                      of in-order TCP segments of one flow as one GSO write; returns how many were taken.
 * cutSegments, gsoSplit, groCoalesce: the offload byte work without a TUN (offload_js.c).
 * counters(handle, Float64Array) the offload counters, in the order of enum offload_counter.
 * offloadError(handle) 0 with offloads on, -1 if not asked for, else the errno that refused them.
 * name(handle)         the interface name the kernel assigned.
 * close(handle)        stop reading and close the fd (idempotent); lets the event loop exit.
 * notify, tcpCongestion, sendNow, sendParts, streamReader*: see notify.c, sockopt.c and
 *                      stream_read.c (they share this addon, not its TUN state).
 *
 * Reads never block: the fd is O_NONBLOCK and watched with a level-triggered uv_poll_t.
 */
#include "tun.h"
#include "notify.h"
#include "offload_js.h"
#include "sockopt.h"
#include "stream_read.h"
#include "trim.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

/* Layout of the kernel's struct in6_ifreq (linux/ipv6.h clashes with glibc's netinet/in.h). */
struct pd_in6_ifreq {
  struct in6_addr addr;
  uint32_t prefixlen;
  int ifindex;
};

static const char *errno_code(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOENT: return "ENOENT";
    case ENODEV: return "ENODEV";
    case ENXIO: return "ENXIO";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    default: return "ETUN";
  }
}

static void throw_errno(napi_env env, const char *what, int e) {
  char msg[512];
  const char *hint = "";
  if (e == EPERM || e == EACCES)
    hint = " (run as root or with CAP_NET_ADMIN, or set IfName: none for router-only mode)";
  else if (e == ENOENT || e == ENODEV || e == ENXIO)
    hint = " (load the tun module with `modprobe tun`, or set IfName: none for router-only mode)";
  else if (e == EBUSY)
    hint = " (the interface name is in use by another process; pick another IfName or \"auto\")";
  else if (e == EAFNOSUPPORT)
    hint = " (IPv6 is disabled in this kernel or namespace)";
  snprintf(msg, sizeof msg, "TUN: %s: %s%s", what, strerror(e), hint);
  napi_throw_error(env, errno_code(e), msg);
}

static tun_t *get_tun(napi_env env, napi_value v) {
  tun_t *t = NULL;
  if (napi_get_value_external(env, v, (void **)&t) != napi_ok || t == NULL) {
    napi_throw_type_error(env, NULL, "TUN: expected a TUN handle");
    return NULL;
  }
  return t;
}

/* A call's arguments (missing ones undefined) and its handle, argv[0]; NULL after throwing. */
tun_t *tun_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "TUN: internal N-API call failed");
    return NULL;
  }
  for (size_t i = argc; i < n; i++) napi_get_undefined(env, &argv[i]);
  return get_tun(env, argv[0]);
}

static void on_poll_closed(uv_handle_t *h) {
  tun_t *t = (tun_t *)h->data;
  t->poll_closed = 1;
  if (t->finalized) free(t);
}

static void cleanup_hook(void *arg);

/* Stops reading and closes the fd. Safe to call from JS, the finalizer or the env cleanup hook. */
static void do_close(tun_t *t, int from_cleanup) {
  if (t->closed) return;
  t->closed = 1;
  if (t->polling) {
    uv_poll_stop(&t->poll);
    t->polling = 0;
  }
  if (t->poll_inited) uv_close((uv_handle_t *)&t->poll, on_poll_closed);
  if (t->fd >= 0) {
    close(t->fd);
    t->fd = -1;
  }
  t->buf = NULL;
  t->meta = NULL;
  /* During environment teardown the references die with the environment; leave N-API alone. */
  if (from_cleanup) return;
  napi_remove_env_cleanup_hook(t->env, cleanup_hook, t);
  if (t->cb_ref) napi_delete_reference(t->env, t->cb_ref);
  if (t->buf_ref) napi_delete_reference(t->env, t->buf_ref);
  if (t->meta_ref) napi_delete_reference(t->env, t->meta_ref);
  t->cb_ref = t->buf_ref = t->meta_ref = NULL;
  if (t->actx) napi_async_destroy(t->env, t->actx);
  t->actx = NULL;
}

static void cleanup_hook(void *arg) { do_close((tun_t *)arg, 1); }

static void finalize_tun(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  tun_t *t = (tun_t *)data;
  t->finalized = 1;
  do_close(t, 0);
  if (!t->poll_inited || t->poll_closed) free(t);
}

/* Packets the kernel may queue for planetd to read (txqueuelen; Linux defaults TUN devices to 500). */
#define TUN_TX_QUEUE 4096

static int configure(const char *name, int mtu, const uint8_t *addr, int prefix,
                     const char **step) {
  int s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) {
    *step = "cannot open an IPv6 control socket";
    return errno;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  ifr.ifr_mtu = mtu;
  if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
    *step = "cannot set the MTU";
    goto fail;
  }
  /* The kernel queues packets for us to read here; its default of 500 overflows in the bursts a
   * TCP sender makes at IfMTU 1420 before the event loop comes round, and every overflow is an
   * inner retransmit. A longer queue costs nothing while it is empty; failing to set it is not fatal. */
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  ifr.ifr_qlen = TUN_TX_QUEUE;
  (void)ioctl(s, SIOCSIFTXQLEN, &ifr);
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) {
    *step = "cannot find the interface index";
    goto fail;
  }
  struct pd_in6_ifreq r;
  memset(&r, 0, sizeof r);
  memcpy(&r.addr, addr, 16);
  r.prefixlen = (uint32_t)prefix;
  r.ifindex = ifr.ifr_ifindex;
  if (ioctl(s, SIOCSIFADDR, &r) < 0 && errno != EEXIST) {
    *step = "cannot add the IPv6 address";
    goto fail;
  }
  memset(&ifr, 0, sizeof ifr);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
    *step = "cannot read the interface flags";
    goto fail;
  }
  ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
    *step = "cannot bring the interface up";
    goto fail;
  }
  close(s);
  return 0;
fail : {
  int e = errno;
  close(s);
  return e;
}
}

/* A TUN fd for `name` ("" = kernel's choice), with a virtio_net_hdr on every packet if vnet; the
 * name the kernel gave in actual. -1 with *opening set when /dev/net/tun itself failed, errno kept. */
static int create_tun(const char *name, bool vnet, char actual[IFNAMSIZ], int *opening) {
  *opening = 1;
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  *opening = 0;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (vnet ? IFF_VNET_HDR : 0);
  snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  memset(actual, 0, IFNAMSIZ);
  memcpy(actual, ifr.ifr_name, IFNAMSIZ - 1);
  return fd;
}

/* Checksum offload and TCPv6 segmentation (with ECN's CWR): the kernel then hands us super-packets
 * up to 64 KiB at any MTU and takes GSO writes. 0 or the errno that refused them. */
static int enable_offloads(int fd) {
  int hdr_len = VNET_HDR_LEN;
  if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) return errno;
  if (ioctl(fd, TUNSETOFFLOAD, (unsigned long)(TUN_F_CSUM | TUN_F_TSO6 | TUN_F_TSO_ECN)) < 0) return errno;
  return 0;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 7) {
    napi_throw_type_error(env, NULL, "TUN: open(name, mtu, address, prefixLength, buffer, meta, onBatch)");
    return NULL;
  }
  char name[64];
  size_t name_len = 0;
  if (napi_get_value_string_utf8(env, argv[0], name, sizeof name, &name_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "TUN: name must be a string");
    return NULL;
  }
  if (strcmp(name, "auto") == 0) name[0] = '\0';
  if (strlen(name) >= IFNAMSIZ) {
    char msg[128];
    snprintf(msg, sizeof msg, "TUN: interface name \"%s\" is longer than %d characters", name, IFNAMSIZ - 1);
    napi_throw_error(env, "EINVAL", msg);
    return NULL;
  }
  int32_t mtu = 0, prefix = 0;
  if (napi_get_value_int32(env, argv[1], &mtu) != napi_ok || mtu < 1280 || mtu > 65535) {
    napi_throw_range_error(env, NULL, "TUN: MTU must be an integer in [1280, 65535]");
    return NULL;
  }
  bool is_buf = false;
  void *addr = NULL;
  size_t addr_len = 0;
  napi_is_buffer(env, argv[2], &is_buf);
  if (!is_buf || napi_get_buffer_info(env, argv[2], &addr, &addr_len) != napi_ok || addr_len != 16) {
    napi_throw_type_error(env, NULL, "TUN: address must be a 16-byte Buffer");
    return NULL;
  }
  if (napi_get_value_int32(env, argv[3], &prefix) != napi_ok || prefix < 0 || prefix > 128) {
    napi_throw_range_error(env, NULL, "TUN: prefixLength must be in [0, 128]");
    return NULL;
  }
  void *buf = NULL;
  size_t buf_len = 0;
  napi_is_buffer(env, argv[4], &is_buf);
  if (!is_buf || napi_get_buffer_info(env, argv[4], &buf, &buf_len) != napi_ok ||
      buf_len < PACKET_GAP + VNET_HDR_LEN + MAX_READ + PACKET_TAILROOM) {
    napi_throw_type_error(env, NULL, "TUN: read buffer must hold a largest packet with its headroom and tailroom");
    return NULL;
  }
  bool is_ta = false;
  napi_typedarray_type ta_type;
  size_t meta_len = 0;
  void *meta = NULL;
  napi_is_typedarray(env, argv[5], &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, argv[5], &ta_type, &meta_len, &meta, NULL, NULL) != napi_ok ||
      ta_type != napi_int32_array || meta_len < META_STRIDE) {
    napi_throw_type_error(env, NULL, "TUN: meta must be an Int32Array of at least 3 entries");
    return NULL;
  }
  napi_valuetype cb_type;
  napi_typeof(env, argv[6], &cb_type);
  if (cb_type != napi_function) {
    napi_throw_type_error(env, NULL, "TUN: onBatch must be a function");
    return NULL;
  }

  bool offload = false;
  if (argc > 7) napi_get_value_bool(env, argv[7], &offload);
  char actual[IFNAMSIZ];
  int opening = 0;
  int fd = create_tun(name, offload, actual, &opening);
  if (fd < 0) {
    char what[96];
    snprintf(what, sizeof what, "cannot create interface \"%s\"", name[0] ? name : "tun%d");
    throw_errno(env, opening ? "cannot open /dev/net/tun" : what, errno);
    return NULL;
  }
  int offload_error = -1;
  if (offload) {
    offload_error = enable_offloads(fd);
    if (offload_error != 0) {
      /* The interface goes with its fd; the same name comes back plain. */
      close(fd);
      fd = create_tun(actual, false, actual, &opening);
      if (fd < 0) {
        throw_errno(env, "cannot reopen the interface without offloads", errno);
        return NULL;
      }
    }
  }
  const char *step = "";
  int e = configure(actual, mtu, (const uint8_t *)addr, prefix, &step);
  if (e != 0) {
    close(fd);
    char what[128];
    snprintf(what, sizeof what, "%s: %s", actual, step);
    throw_errno(env, what, e);
    return NULL;
  }

  tun_t *t = (tun_t *)calloc(1, sizeof(tun_t) + 2 * SCRATCH_BYTES);
  if (t == NULL) {
    close(fd);
    napi_throw_error(env, NULL, "TUN: out of memory");
    return NULL;
  }
  t->env = env;
  t->fd = fd;
  memcpy(t->name, actual, IFNAMSIZ);
  t->buf = (uint8_t *)buf;
  t->buf_len = buf_len;
  t->meta = (int32_t *)meta;
  t->max_packets = meta_len / META_STRIDE;
  t->vnet = offload && offload_error == 0;
  t->offload_error = offload_error;
  napi_value resource_name, handle;
  if (napi_create_reference(env, argv[6], 1, &t->cb_ref) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &t->buf_ref) != napi_ok ||
      napi_create_reference(env, argv[5], 1, &t->meta_ref) != napi_ok ||
      napi_create_string_utf8(env, "planetd:tun", NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_async_init(env, NULL, resource_name, &t->actx) != napi_ok ||
      napi_create_external(env, t, finalize_tun, NULL, &handle) != napi_ok) {
    napi_add_env_cleanup_hook(env, cleanup_hook, t); /* so that do_close can remove it */
    do_close(t, 0);
    free(t);
    napi_throw_error(env, NULL, "TUN: internal N-API call failed");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, cleanup_hook, t);
  return handle;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  tun_t *t = tun_args(env, info, 1, argv);
  if (t == NULL) return NULL;
  if (t->closed) {
    napi_throw_error(env, NULL, "TUN: device is closed");
    return NULL;
  }
  if (t->polling) return NULL;
  if (!t->poll_inited) {
    uv_loop_t *loop = NULL;
    CHECK(napi_get_uv_event_loop(env, &loop));
    int r = uv_poll_init(loop, &t->poll, t->fd);
    if (r < 0) {
      throw_errno(env, "cannot watch the TUN fd", -r);
      return NULL;
    }
    t->poll.data = t;
    t->poll_inited = 1;
  }
  int r = uv_poll_start(&t->poll, UV_READABLE, tun_on_readable);
  if (r < 0) {
    throw_errno(env, "cannot watch the TUN fd", -r);
    return NULL;
  }
  t->polling = 1;
  return NULL;
}

static napi_value js_name(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  tun_t *t = tun_args(env, info, 1, argv);
  if (t == NULL) return NULL;
  CHECK(napi_create_string_utf8(env, t->name, NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  tun_t *t = tun_args(env, info, 1, argv);
  if (t == NULL) return NULL;
  do_close(t, 0);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"start", NULL, js_start, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, tun_js_write, NULL, NULL, NULL, napi_default, NULL},
      {"writeBatch", NULL, tun_js_write_batch, NULL, NULL, NULL, napi_default, NULL},
      {"counters", NULL, tun_js_counters, NULL, NULL, NULL, napi_default, NULL},
      {"offloadError", NULL, tun_js_offload_error, NULL, NULL, NULL, napi_default, NULL},
      {"superPackets", NULL, tun_js_super_packets, NULL, NULL, NULL, napi_default, NULL},
      {"completeChecksum", NULL, tun_js_complete_checksum, NULL, NULL, NULL, napi_default, NULL},
      {"cutSegments", NULL, planetd_cut_segments, NULL, NULL, NULL, napi_default, NULL},
      {"gsoSplit", NULL, planetd_gso_split, NULL, NULL, NULL, napi_default, NULL},
      {"groCoalesce", NULL, planetd_gro_coalesce, NULL, NULL, NULL, napi_default, NULL},
      {"name", NULL, js_name, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"notify", NULL, planetd_notify, NULL, NULL, NULL, napi_default, NULL},
      {"tcpCongestion", NULL, planetd_tcp_congestion, NULL, NULL, NULL, napi_default, NULL},
      {"sendNow", NULL, planetd_send_now, NULL, NULL, NULL, napi_default, NULL},
      {"sendParts", NULL, planetd_send_parts, NULL, NULL, NULL, napi_default, NULL},
      {"streamReaderOpen", NULL, planetd_stream_reader_open, NULL, NULL, NULL, napi_default, NULL},
      {"streamReaderStart", NULL, planetd_stream_reader_start, NULL, NULL, NULL, napi_default, NULL},
      {"streamReaderClose", NULL, planetd_stream_reader_close, NULL, NULL, NULL, napi_default, NULL},
      {"mallocTrim", NULL, planetd_malloc_trim, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
