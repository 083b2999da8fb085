/*
 * planetd_udp: a batched UDP socket for udp:// links (N-API + libuv), used by
 * src/overlay/links/udp-native.ts; node:dgram is the fallback when this addon is missing.
 *
 * open(family, address, port, bufferBytes, recvBuf, recvMeta, sendBuf, sendMeta, state, onEvent)
 *   A non-blocking socket bound to address:port (family 4 or 6; "" = any), SO_RCVBUF/SO_SNDBUF asked
 *   for bufferBytes, UDP_GRO on when the kernel has it; reading starts at once. Throws an Error whose
 *   code is the errno name (EADDRINUSE, ...).
 * Receive: each readable wakeup drains up to RECV_SLOTS datagrams with one recvmmsg into recvBuf
 *   (RECV_SLOT bytes a slot); a GRO buffer (cmsg UDP_GRO: several datagrams of gso_size) is split
 *   back into its datagrams. Entry i of recvMeta (stride RM_STRIDE): offset, length, source port,
 *   source address as 4 words (IPv4 in the first), IPv6 scope id. Then onEvent(count, errno, -2)
 *   once; errno != 0 is a receive error (ECONNREFUSED from an ICMP error on a connected socket).
 * Send: JS appends datagrams to sendBuf (contiguous) and entries to sendMeta (stride SM_STRIDE:
 *   offset, length, destination slot, or -1 on a connected socket), and counts them in state.
 *   flush() sends them with sendmmsg; consecutive datagrams of one size to one destination leave as
 *   one UDP_SEGMENT (GSO) message, the last of a run may be shorter. What the kernel refuses with
 *   EAGAIN stays queued (moved to the front) and is sent when the socket is writable; a datagram
 *   refused with another error is dropped and counted, and the error is returned (or reported as
 *   onEvent(0, errno, slot) when the writable wakeup sent it).
 * setDest(slot, address, port), connect(address, port), setTTL(ttl): 0 or -errno.
 * sourceText(i): entry i's source address as text (Node's form, with %zone), for a cache miss only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define RECV_SLOTS 16
#define RECV_SLOT 65536
#define RM_STRIDE 8
#define SM_STRIDE 4
#define MAX_DESTS 256
/* The kernel's UDP_MAX_SEGMENTS was 64 before 6.x raised it; a GSO message stays under an IP packet. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000
#define SEND_MSGS 64

/* state: shared with JS (udp-native.ts names the same indices). */
enum {
  S_QUEUED, S_BYTES, S_DROPPED, S_ERR_SLOT, S_SENT, S_GSO_MSGS, S_GRO_BUFS, S_RECV_TRUNC, S_FLAGS,
  S_COUNT
};
#define F_GRO 1
#define F_GSO 2

typedef union {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} addr_t;

typedef struct {
  napi_env env;
  int fd;
  int family;
  uv_poll_t poll;
  int poll_inited, poll_events, closed, poll_closed, finalized;
  napi_ref cb_ref, rbuf_ref, rmeta_ref, sbuf_ref, smeta_ref, state_ref;
  napi_async_context actx;
  uint8_t *rbuf;
  size_t rslots;
  int32_t *rmeta;
  size_t rmeta_entries;
  uint8_t *sbuf;
  size_t sbuf_len;
  int32_t *smeta;
  size_t smeta_entries;
  int32_t *state;
  /* A GSO message the kernel refused: its datagrams go one by one up to this entry. */
  int32_t nogso_until;
  addr_t dests[MAX_DESTS];
  socklen_t dest_len[MAX_DESTS];
  struct mmsghdr rmsgs[RECV_SLOTS];
  struct iovec riov[RECV_SLOTS];
  addr_t rsrc[RECV_SLOTS];
  char rctl[RECV_SLOTS][CMSG_SPACE(sizeof(int))];
  struct mmsghdr smsgs[SEND_MSGS];
  struct iovec siov[SEND_MSGS];
  char sctl[SEND_MSGS][CMSG_SPACE(sizeof(uint16_t))];
  int32_t sentries[SEND_MSGS];
} sock_t;

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "UDP: internal N-API call failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static const char *errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EINVAL: return "EINVAL";
    case ENODEV: return "ENODEV";
    case ENETUNREACH: return "ENETUNREACH";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EMSGSIZE: return "EMSGSIZE";
    case ENOBUFS: return "ENOBUFS";
    case EMFILE: return "EMFILE";
    default: return "EUDP";
  }
}

static void throw_errno(napi_env env, const char *what, int e) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s %s: %s", what, errno_name(e), strerror(e));
  napi_throw_error(env, errno_name(e), msg);
}

static sock_t *get_sock(napi_env env, napi_value v) {
  sock_t *t = NULL;
  if (napi_get_value_external(env, v, (void **)&t) != napi_ok || t == NULL) {
    napi_throw_type_error(env, NULL, "UDP: expected a socket handle");
    return NULL;
  }
  return t;
}

static void on_poll_closed(uv_handle_t *h) {
  sock_t *t = (sock_t *)h->data;
  t->poll_closed = 1;
  if (t->finalized) free(t);
}

static void cleanup_hook(void *arg);

static void do_close(sock_t *t, int from_cleanup) {
  if (t->closed) return;
  t->closed = 1;
  if (t->poll_inited) {
    uv_poll_stop(&t->poll);
    uv_close((uv_handle_t *)&t->poll, on_poll_closed);
  }
  if (t->fd >= 0) {
    close(t->fd);
    t->fd = -1;
  }
  t->rbuf = t->sbuf = NULL;
  t->rmeta = t->smeta = t->state = NULL;
  if (from_cleanup) return;
  napi_remove_env_cleanup_hook(t->env, cleanup_hook, t);
  napi_ref *refs[] = {&t->cb_ref, &t->rbuf_ref, &t->rmeta_ref, &t->sbuf_ref, &t->smeta_ref, &t->state_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    if (*refs[i]) napi_delete_reference(t->env, *refs[i]);
    *refs[i] = NULL;
  }
  if (t->actx) napi_async_destroy(t->env, t->actx);
  t->actx = NULL;
}

static void cleanup_hook(void *arg) { do_close((sock_t *)arg, 1); }

static void finalize_sock(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  sock_t *t = (sock_t *)data;
  t->finalized = 1;
  do_close(t, 0);
  if (!t->poll_inited || t->poll_closed) free(t);
}

static void emit(sock_t *t, int count, int err, int slot) {
  napi_env env = t->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[3], result;
  if (t->cb_ref && napi_get_reference_value(env, t->cb_ref, &cb) == napi_ok && cb != NULL) {
    napi_get_global(env, &recv);
    napi_create_int32(env, count, &argv[0]);
    napi_create_int32(env, err, &argv[1]);
    napi_create_int32(env, slot, &argv[2]);
    napi_status st = napi_make_callback(env, t->actx, recv, cb, 3, argv, &result);
    if (st == napi_pending_exception) {
      napi_value exc;
      if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void set_poll(sock_t *t, int events);

/* One entry of recvMeta per datagram; false when recvMeta is full. */
static int add_entry(sock_t *t, size_t *n, size_t off, size_t len, const addr_t *src) {
  if (*n >= t->rmeta_entries) return 0;
  int32_t *m = t->rmeta + RM_STRIDE * *n;
  m[0] = (int32_t)off;
  m[1] = (int32_t)len;
  if (src->sa.sa_family == AF_INET6) {
    m[2] = ntohs(src->v6.sin6_port);
    memcpy(&m[3], &src->v6.sin6_addr, 16);
    m[7] = (int32_t)src->v6.sin6_scope_id;
  } else {
    m[2] = ntohs(src->v4.sin_port);
    memcpy(&m[3], &src->v4.sin_addr, 4);
    m[4] = m[5] = m[6] = m[7] = 0;
  }
  (*n)++;
  return 1;
}

/* One recvmmsg and one call into JS; false when the socket had nothing more (or closed). */
static int receive_batch(sock_t *t) {
  size_t slots = t->rslots < RECV_SLOTS ? t->rslots : RECV_SLOTS;
  for (size_t i = 0; i < slots; i++) {
    t->riov[i].iov_base = t->rbuf + i * RECV_SLOT;
    t->riov[i].iov_len = RECV_SLOT;
    struct msghdr *h = &t->rmsgs[i].msg_hdr;
    memset(h, 0, sizeof *h);
    h->msg_name = &t->rsrc[i];
    h->msg_namelen = sizeof t->rsrc[i];
    h->msg_iov = &t->riov[i];
    h->msg_iovlen = 1;
    h->msg_control = t->rctl[i];
    h->msg_controllen = sizeof t->rctl[i];
  }
  int got;
  do {
    got = recvmmsg(t->fd, t->rmsgs, (unsigned)slots, 0, NULL);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    int e = errno;
    if (e == EAGAIN || e == EWOULDBLOCK) return 0;
    emit(t, 0, e, -2);
    return !t->closed;
  }
  size_t n = 0;
  for (int i = 0; i < got; i++) {
    size_t len = t->rmsgs[i].msg_len;
    size_t off = (size_t)i * RECV_SLOT;
    int gso = 0;
    struct msghdr *h = &t->rmsgs[i].msg_hdr;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL; c = CMSG_NXTHDR(h, c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) memcpy(&gso, CMSG_DATA(c), sizeof gso);
    }
    if (gso > 0 && (size_t)gso < len) {
      t->state[S_GRO_BUFS]++;
      for (size_t at = 0; at < len; at += (size_t)gso) {
        size_t part = len - at < (size_t)gso ? len - at : (size_t)gso;
        if (!add_entry(t, &n, off + at, part, &t->rsrc[i])) t->state[S_RECV_TRUNC]++;
      }
    } else if (!add_entry(t, &n, off, len, &t->rsrc[i])) {
      t->state[S_RECV_TRUNC]++;
    }
  }
  if (n > 0) emit(t, (int)n, 0, -2);
  return got == (int)slots && !t->closed;
}

static int flush_queue(sock_t *t);

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_t *t = (sock_t *)h->data;
  if (t->closed) return;
  if (status < 0) {
    /* libuv stops the poll on POLLERR: a socket error (ECONNREFUSED from an ICMP error on a
     * connected socket) is read and cleared here, reported, and the poll restarted. */
    int err = 0;
    socklen_t len = sizeof err;
    int wanted = t->poll_events;
    t->poll_events = 0;
    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err != 0) {
      emit(t, 0, err, -2);
      set_poll(t, wanted);
    } else {
      emit(t, 0, -status, -2);
    }
    return;
  }
  if (events & UV_WRITABLE) {
    int e = flush_queue(t);
    if (e != 0 && !t->closed) emit(t, 0, e, t->state[S_ERR_SLOT]);
  }
  /* A few batches per wakeup; the level-triggered poll comes back for the rest. */
  for (int round = 0; round < 4 && !t->closed && (events & UV_READABLE); round++) {
    if (!receive_batch(t)) break;
  }
}

static void set_poll(sock_t *t, int events) {
  if (t->closed || t->poll_events == events) return;
  if (uv_poll_start(&t->poll, events, on_poll) == 0) t->poll_events = events;
}

/*
 * Sends the queue. Returns 0 or the errno of the first datagram refused for good (the destination
 * slot in state[S_ERR_SLOT]).
 */
static int flush_queue(sock_t *t) {
  int32_t queued = t->state[S_QUEUED];
  int32_t i = 0;
  int first_err = 0;
  int blocked = 0;
  if (queued < 0 || (size_t)queued > t->smeta_entries) queued = 0;
  while (i < queued && !blocked) {
    int nmsg = 0;
    int32_t j = i;
    while (j < queued && nmsg < SEND_MSGS) {
      int32_t *m = t->smeta + SM_STRIDE * j;
      int32_t off = m[0], len = m[1], slot = m[2];
      int32_t k = j + 1;
      size_t total = (size_t)len;
      if ((t->state[S_FLAGS] & F_GSO) && j >= t->nogso_until) {
        while (k < queued && k - j < GSO_MAX_SEGS) {
          int32_t *n = t->smeta + SM_STRIDE * k;
          if (n[2] != slot || n[1] > len || n[0] != off + (int32_t)total || total + n[1] > GSO_MAX_BYTES) break;
          total += (size_t)n[1];
          k++;
          if (n[1] < len) break; /* a shorter one ends the run */
        }
      }
      if ((size_t)off + total > t->sbuf_len) { /* cannot happen unless JS broke the layout */
        queued = j;
        break;
      }
      struct msghdr *h = &t->smsgs[nmsg].msg_hdr;
      memset(h, 0, sizeof *h);
      t->siov[nmsg].iov_base = t->sbuf + off;
      t->siov[nmsg].iov_len = total;
      h->msg_iov = &t->siov[nmsg];
      h->msg_iovlen = 1;
      if (slot >= 0 && slot < MAX_DESTS) {
        h->msg_name = &t->dests[slot];
        h->msg_namelen = t->dest_len[slot];
      }
      if (k - j > 1) {
        h->msg_control = t->sctl[nmsg];
        h->msg_controllen = CMSG_SPACE(sizeof(uint16_t));
        struct cmsghdr *c = CMSG_FIRSTHDR(h);
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t seg = (uint16_t)len;
        memcpy(CMSG_DATA(c), &seg, sizeof seg);
      }
      t->sentries[nmsg] = k - j;
      nmsg++;
      j = k;
    }
    int done = 0;
    while (done < nmsg) {
      int r = sendmmsg(t->fd, t->smsgs + done, (unsigned)(nmsg - done), 0);
      if (r > 0) {
        for (int x = done; x < done + r; x++) {
          t->state[S_SENT] += t->sentries[x];
          if (t->sentries[x] > 1) t->state[S_GSO_MSGS]++;
          i += t->sentries[x];
        }
        done += r;
        continue;
      }
      int e = r == 0 ? EAGAIN : errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
        blocked = 1;
        break;
      }
      int count = t->sentries[done];
      if (count > 1 && (e == EIO || e == EINVAL || e == EMSGSIZE || e == EOPNOTSUPP)) {
        /* The device or route cannot take this GSO message: its datagrams go one by one. */
        t->nogso_until = i + count;
        if (e == EIO || e == EOPNOTSUPP) t->state[S_FLAGS] &= ~F_GSO;
        break;
      }
      t->state[S_DROPPED] += count;
      if (first_err == 0) {
        first_err = e;
        t->state[S_ERR_SLOT] = t->smeta[SM_STRIDE * i + 2];
      }
      i += count;
      done++;
    }
  }
  /* Keep what is left at the front of the buffer. */
  int32_t left = queued - i;
  if (left > 0 && i > 0) {
    int32_t base = t->smeta[SM_STRIDE * i];
    int32_t end = t->state[S_BYTES];
    memmove(t->sbuf, t->sbuf + base, (size_t)(end - base));
    memmove(t->smeta, t->smeta + SM_STRIDE * i, (size_t)left * SM_STRIDE * sizeof(int32_t));
    for (int32_t x = 0; x < left; x++) t->smeta[SM_STRIDE * x] -= base;
    t->state[S_BYTES] = end - base;
  } else if (left <= 0) {
    left = 0;
    t->state[S_BYTES] = 0;
  }
  t->nogso_until = t->nogso_until > i ? t->nogso_until - i : 0;
  t->state[S_QUEUED] = left;
  set_poll(t, left > 0 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
  return first_err;
}

/* address text (with an optional %zone) and port into a sockaddr of `family`; 0 or an errno. */
static int parse_addr(int family, const char *text, int port, addr_t *out, socklen_t *len) {
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  snprintf(host, sizeof host, "%s", text);
  char *zone = strchr(host, '%');
  if (zone) *zone++ = '\0';
  memset(out, 0, sizeof *out);
  struct in_addr v4;
  int is_v4 = inet_pton(AF_INET, host, &v4) == 1;
  if (family == 4) {
    if (!is_v4 && host[0] != '\0') return EINVAL;
    out->v4.sin_family = AF_INET;
    out->v4.sin_port = htons((uint16_t)port);
    if (is_v4) out->v4.sin_addr = v4;
    *len = sizeof out->v4;
    return 0;
  }
  out->v6.sin6_family = AF_INET6;
  out->v6.sin6_port = htons((uint16_t)port);
  *len = sizeof out->v6;
  if (host[0] == '\0') return 0;
  if (is_v4) {
    out->v6.sin6_addr.s6_addr[10] = 0xff;
    out->v6.sin6_addr.s6_addr[11] = 0xff;
    memcpy(&out->v6.sin6_addr.s6_addr[12], &v4, 4);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &out->v6.sin6_addr) != 1) return EINVAL;
  if (zone && *zone) {
    unsigned idx = if_nametoindex(zone);
    if (idx == 0) idx = (unsigned)strtoul(zone, NULL, 10);
    if (idx == 0) return EINVAL;
    out->v6.sin6_scope_id = idx;
  }
  return 0;
}

static int get_string(napi_env env, napi_value v, char *out, size_t size) {
  size_t n = 0;
  return napi_get_value_string_utf8(env, v, out, size, &n) == napi_ok;
}

static int get_typed(napi_env env, napi_value v, napi_typedarray_type want, void **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  napi_is_typedarray(env, v, &is_ta);
  return is_ta && napi_get_typedarray_info(env, v, &type, len, data, NULL, NULL) == napi_ok && type == want;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 10;
  napi_value argv[10];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t family = 0, port = 0, buf_bytes = 0;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  void *rbuf, *rmeta, *sbuf, *smeta, *state;
  size_t rbuf_len, rmeta_len, sbuf_len, smeta_len, state_len;
  napi_valuetype cb_type = napi_undefined;
  if (argc == 10) napi_typeof(env, argv[9], &cb_type);
  if (argc < 10 || napi_get_value_int32(env, argv[0], &family) != napi_ok || (family != 4 && family != 6) ||
      !get_string(env, argv[1], host, sizeof host) || napi_get_value_int32(env, argv[2], &port) != napi_ok ||
      port < 0 || port > 65535 || napi_get_value_int32(env, argv[3], &buf_bytes) != napi_ok ||
      !get_typed(env, argv[4], napi_uint8_array, &rbuf, &rbuf_len) || rbuf_len < RECV_SLOT ||
      !get_typed(env, argv[5], napi_int32_array, &rmeta, &rmeta_len) || rmeta_len < RM_STRIDE ||
      !get_typed(env, argv[6], napi_uint8_array, &sbuf, &sbuf_len) || sbuf_len < RECV_SLOT ||
      !get_typed(env, argv[7], napi_int32_array, &smeta, &smeta_len) || smeta_len < SM_STRIDE ||
      !get_typed(env, argv[8], napi_int32_array, &state, &state_len) || state_len < S_COUNT ||
      cb_type != napi_function) {
    napi_throw_type_error(env, NULL,
                          "UDP: open(family, address, port, bufferBytes, recvBuf, recvMeta, sendBuf, "
                          "sendMeta, state, onEvent)");
    return NULL;
  }
  addr_t bind_addr;
  socklen_t bind_len;
  if (parse_addr(family, host, port, &bind_addr, &bind_len) != 0) {
    throw_errno(env, "bind", EINVAL);
    return NULL;
  }
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "socket", errno);
    return NULL;
  }
  int one = 1, zero = 0;
  if (family == 6) (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  if (bind(fd, &bind_addr.sa, bind_len) < 0) {
    int e = errno;
    close(fd);
    throw_errno(env, "bind", e);
    return NULL;
  }
  /* The kernel caps these at net.core.[rw]mem_max; bigger is better for bursts, failure is harmless. */
  if (buf_bytes > 0) {
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf_bytes, sizeof buf_bytes);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf_bytes, sizeof buf_bytes);
  }
  int32_t flags = F_GSO;
  if (setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0) flags |= F_GRO;

  sock_t *t = (sock_t *)calloc(1, sizeof(sock_t));
  if (t == NULL) {
    close(fd);
    napi_throw_error(env, NULL, "UDP: out of memory");
    return NULL;
  }
  t->env = env;
  t->fd = fd;
  t->family = family;
  t->rbuf = (uint8_t *)rbuf;
  t->rslots = rbuf_len / RECV_SLOT;
  t->rmeta = (int32_t *)rmeta;
  t->rmeta_entries = rmeta_len / RM_STRIDE;
  t->sbuf = (uint8_t *)sbuf;
  t->sbuf_len = sbuf_len;
  t->smeta = (int32_t *)smeta;
  t->smeta_entries = smeta_len / SM_STRIDE;
  t->state = (int32_t *)state;
  memset(t->state, 0, S_COUNT * sizeof(int32_t));
  t->state[S_FLAGS] = flags;
  napi_value resource_name, handle;
  uv_loop_t *loop = NULL;
  int ok = napi_create_reference(env, argv[9], 1, &t->cb_ref) == napi_ok &&
           napi_create_reference(env, argv[4], 1, &t->rbuf_ref) == napi_ok &&
           napi_create_reference(env, argv[5], 1, &t->rmeta_ref) == napi_ok &&
           napi_create_reference(env, argv[6], 1, &t->sbuf_ref) == napi_ok &&
           napi_create_reference(env, argv[7], 1, &t->smeta_ref) == napi_ok &&
           napi_create_reference(env, argv[8], 1, &t->state_ref) == napi_ok &&
           napi_create_string_utf8(env, "planetd:udp", NAPI_AUTO_LENGTH, &resource_name) == napi_ok &&
           napi_async_init(env, NULL, resource_name, &t->actx) == napi_ok &&
           napi_get_uv_event_loop(env, &loop) == napi_ok && uv_poll_init(loop, &t->poll, fd) == 0;
  if (ok) {
    t->poll.data = t;
    t->poll_inited = 1;
    ok = napi_create_external(env, t, finalize_sock, NULL, &handle) == napi_ok;
  }
  napi_add_env_cleanup_hook(env, cleanup_hook, t);
  if (!ok) {
    do_close(t, 0);
    if (!t->poll_inited) free(t);
    else t->finalized = 1; /* freed by on_poll_closed */
    napi_throw_error(env, NULL, "UDP: internal N-API call failed");
    return NULL;
  }
  set_poll(t, UV_READABLE);
  return handle;
}

static sock_t *open_sock(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "UDP: missing arguments");
    return NULL;
  }
  sock_t *t = get_sock(env, argv[0]);
  if (t != NULL && t->closed) {
    napi_throw_error(env, "ERR_SOCKET_DGRAM_NOT_RUNNING", "UDP: socket is closed");
    return NULL;
  }
  return t;
}

static napi_value int_result(napi_env env, int32_t v) {
  napi_value out;
  CHECK(napi_create_int32(env, v, &out));
  return out;
}

static napi_value js_set_dest(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  sock_t *t = open_sock(env, info, 4, argv);
  if (t == NULL) return NULL;
  int32_t slot = -1, port = -1;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  if (napi_get_value_int32(env, argv[1], &slot) != napi_ok || slot < 0 || slot >= MAX_DESTS ||
      !get_string(env, argv[2], host, sizeof host) || napi_get_value_int32(env, argv[3], &port) != napi_ok ||
      port <= 0 || port > 65535 || host[0] == '\0') {
    return int_result(env, -EINVAL);
  }
  int e = parse_addr(t->family, host, port, &t->dests[slot], &t->dest_len[slot]);
  return int_result(env, -e);
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  sock_t *t = open_sock(env, info, 3, argv);
  if (t == NULL) return NULL;
  int32_t port = -1;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  addr_t a;
  socklen_t len;
  if (!get_string(env, argv[1], host, sizeof host) || napi_get_value_int32(env, argv[2], &port) != napi_ok ||
      port <= 0 || port > 65535 || host[0] == '\0' || parse_addr(t->family, host, port, &a, &len) != 0) {
    return int_result(env, -EINVAL);
  }
  return int_result(env, connect(t->fd, &a.sa, len) == 0 ? 0 : -errno);
}

static napi_value js_flush(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  sock_t *t = open_sock(env, info, 1, argv);
  if (t == NULL) return NULL;
  return int_result(env, flush_queue(t));
}

static napi_value js_set_ttl(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *t = open_sock(env, info, 2, argv);
  if (t == NULL) return NULL;
  int32_t ttl = 0;
  if (napi_get_value_int32(env, argv[1], &ttl) != napi_ok || ttl < 1 || ttl > 255) return int_result(env, -EINVAL);
  int r = t->family == 6 ? setsockopt(t->fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl)
                         : setsockopt(t->fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl);
  return int_result(env, r == 0 ? 0 : -errno);
}

static napi_value addr_text(napi_env env, const addr_t *a) {
  char text[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  if (a->sa.sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &a->v6.sin6_addr, text, INET6_ADDRSTRLEN);
    if (a->v6.sin6_scope_id != 0) {
      char name[IF_NAMESIZE];
      size_t at = strlen(text);
      if (if_indextoname(a->v6.sin6_scope_id, name) != NULL) snprintf(text + at, sizeof text - at, "%%%s", name);
      else snprintf(text + at, sizeof text - at, "%%%u", a->v6.sin6_scope_id);
    }
  } else {
    inet_ntop(AF_INET, &a->v4.sin_addr, text, sizeof text);
  }
  napi_value out;
  CHECK(napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value js_source_text(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *t = open_sock(env, info, 2, argv);
  if (t == NULL) return NULL;
  int32_t i = -1;
  if (napi_get_value_int32(env, argv[1], &i) != napi_ok || i < 0 || (size_t)i >= t->rmeta_entries) {
    napi_throw_range_error(env, NULL, "UDP: no such receive entry");
    return NULL;
  }
  const int32_t *m = t->rmeta + RM_STRIDE * i;
  addr_t a;
  memset(&a, 0, sizeof a);
  if (t->family == 6) {
    a.v6.sin6_family = AF_INET6;
    memcpy(&a.v6.sin6_addr, &m[3], 16);
    a.v6.sin6_scope_id = (uint32_t)m[7];
  } else {
    a.v4.sin_family = AF_INET;
    memcpy(&a.v4.sin_addr, &m[3], 4);
  }
  return addr_text(env, &a);
}

static napi_value js_address(napi_env env, napi_callback_info info) {
  napi_value argv[1], out, port, family;
  sock_t *t = open_sock(env, info, 1, argv);
  if (t == NULL) return NULL;
  addr_t a;
  socklen_t len = sizeof a;
  if (getsockname(t->fd, &a.sa, &len) < 0) {
    throw_errno(env, "getsockname", errno);
    return NULL;
  }
  CHECK(napi_create_object(env, &out));
  napi_value text = addr_text(env, &a);
  if (text == NULL) return NULL;
  CHECK(napi_set_named_property(env, out, "address", text));
  CHECK(napi_create_int32(env, ntohs(a.sa.sa_family == AF_INET6 ? a.v6.sin6_port : a.v4.sin_port), &port));
  CHECK(napi_set_named_property(env, out, "port", port));
  CHECK(napi_create_string_utf8(env, a.sa.sa_family == AF_INET6 ? "IPv6" : "IPv4", NAPI_AUTO_LENGTH, &family));
  CHECK(napi_set_named_property(env, out, "family", family));
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *t = get_sock(env, argv[0]);
  if (t == NULL) return NULL;
  do_close(t, 0);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"setDest", NULL, js_set_dest, NULL, NULL, NULL, napi_default, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, js_flush, NULL, NULL, NULL, napi_default, NULL},
      {"setTTL", NULL, js_set_ttl, NULL, NULL, NULL, napi_default, NULL},
      {"sourceText", NULL, js_source_text, NULL, NULL, NULL, napi_default, NULL},
      {"address", NULL, js_address, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
