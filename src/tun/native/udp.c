/*
 * planetd_udp: a batched UDP socket for udp:// links (N-API + libuv), used by
 * src/overlay/links/udp-native.ts; node:dgram is the fallback when this addon is missing.
 *
 * open(family, address, port, bufferBytes, recvBuf0, recvMeta0, recvBuf1, recvMeta1, sendBuf0,
 *      sendMeta0, sendBuf1, sendMeta1, state, onEvent)
 *   A non-blocking socket bound to address:port (family 4 or 6; "" = any), SO_RCVBUF/SO_SNDBUF asked
 *   for bufferBytes, UDP_GRO on when the kernel has it; reading starts at once. Throws an Error whose
 *   code is the errno name (EADDRINUSE, ...).
 * Receive (udp_recv.c): a readable wakeup reads recvBuf<n> on the loop thread, or once a read filled
 *   every slot hands it to a threadpool job (PLANETD_UDP_RECV=job|inline fixes one), which drains up to
 *   RECV_SLOTS datagrams with one recvmmsg (RECV_SLOT bytes a slot); a GRO buffer (cmsg UDP_GRO:
 *   several datagrams of gso_size) is split back into its datagrams. Entry i of recvMeta<n> (stride
 *   RM_STRIDE): offset, length, source port, source address as 4 words (IPv4 in the first), IPv6
 *   scope id, open status: a sealed link datagram (CLOSE, 0x10..0x19) whose cookie and key phase
 *   name a receive key (addOpenKey(cookie, phase, key) -> slot or -1; dropOpenKey(slot)) is opened
 *   in place and gets that slot, or OPEN_FAILED; the rest OPEN_NONE. On completion the next job
 *   starts on the other buffer, state[S_RBUF] = n and onEvent(count, errno, -2) once; errno != 0 is
 *   a receive error (ECONNREFUSED from an ICMP error on a connected socket), after the datagrams.
 * Send: JS appends datagrams to sendBuf<state[S_FILL]> (contiguous) and entries to its sendMeta
 *   (stride SM_STRIDE: offset, length, destination slot or -1 on a connected socket, key slot or
 *   -1), and counts them in state (S_QUEUED, S_BYTES). flush(wait) hands that buffer to a threadpool
 *   job unless one is out (a flush of at most PLANETD_UDP_SEND_INLINE, default 4, or any flush on
 *   two CPUs or fewer (few_cpus), datagrams is done on the loop thread instead; with wait, when JS's buffer is full, it waits for that job and completes
 *   it first), and JS fills the other (udp_send.c): the job seals each datagram that names a
 *   key slot (addKey(key) -> slot or -1; dropKey(slot)), its counter written by JS, and sends them
 *   with sendmmsg; consecutive datagrams of one size to one destination leave as one UDP_SEGMENT
 *   (GSO) message, the last of a run may be shorter. What the kernel refuses with EAGAIN stays the
 *   job's and goes when the socket is writable (S_INFLIGHT: bytes a job still holds); a datagram
 *   refused with another error is dropped and counted, and reported as onEvent(0, errno, slot), or
 *   returned by the flush that completed its job (its slot in state[S_ERR_SLOT]). S_BLOCKED: bytes
 *   EAGAIN left waiting, which with S_BYTES is what congested() weighs.
 * sendFragments(frame, count, id, cookie, counterHi, counterLo, destSlot, keySlot): a traffic frame as
 *   count fragment datagrams (udp-link-send.ts's layout, counters from the given one), appended as
 *   send() would append each: one call and one copy of the frame instead of count; count, or
 *   -ENOBUFS (no room: nothing queued) or -EINVAL.
 * setDest(slot, address, port), connect(address, port), setTTL(ttl): 0 or -errno.
 * close(): true when a send or receive job still holds the fd; onEvent(0, 0, -3) follows once it
 *   is closed.
 * sourceText(i): entry i of the batch JS was handed last: its source address as text (Node's form,
 *   with %zone), for a cache miss only.
 * errorHints(entries), errorSourceText(i): ICMP errors read from the error queue (IP_RECVERR), as
 *   hints for JS (udp_err.c has the why): onEvent(count, 0, -4), each entry ERR_STRIDE words.
 */
#include "udp.h"
#include <sched.h>
#include <unistd.h>

/*
 * True where this process may run on two CPUs or fewer. There the other CPU is busy with the kernel's
 * share of the traffic and with the applications, and a threadpool job only adds a wakeup: with
 * both directions sealed, opened and sent on the loop thread, iperf3 through a udp:// pair at IfMTU
 * 1420 on the 2-CPU machine here ran 1.25x the adaptive paths (bench/iperf-rounds.sh, 4 interleaved
 * rounds, every round ahead). With more CPUs the adaptive paths stay the default (not measured
 * here). PLANETD_UDP_RECV and PLANETD_UDP_SEND_INLINE override either way.
 */
static int few_cpus(void) {
  cpu_set_t set;
  long n = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 && n <= 2;
}

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
    case ENOSYS: return "ENOSYS";
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

int udp_can_free(sock_t *t) {
  return t->finalized && t->finished && (!t->poll_inited || t->poll_closed) && !t->work_pending[0] &&
         !t->work_pending[1] && !t->rwork_pending;
}

int udp_jobs_out(sock_t *t) {
  return t->job_queued || t->sending >= 0 || t->recv_out;
}

void udp_free(sock_t *t) {
#ifdef PLANETD_HAVE_OPENSSL
  if (t->aead) EVP_CIPHER_CTX_free(t->aead);
  if (t->open_aead) EVP_CIPHER_CTX_free(t->open_aead);
  for (int s = 0; s < KEY_SLOTS; s++) udp_ctx_free(t->seal_ctx[s]);
  for (int s = 0; s < OPEN_SLOTS; s++) udp_ctx_free(t->open_ctx[s]);
#endif
  direct_aead_free(t->seal_direct);
  direct_aead_free(t->open_direct);
  explicit_bzero(t->seal_key, sizeof t->seal_key);
  explicit_bzero(t->open_key, sizeof t->open_key);
  if (t->lock_inited) {
    uv_mutex_destroy(&t->lock);
    uv_cond_destroy(&t->job_idle);
  }
  free(t);
}

static void on_poll_closed(uv_handle_t *h) {
  sock_t *t = (sock_t *)h->data;
  t->poll_closed = 1;
  if (udp_can_free(t)) udp_free(t);
}

static void cleanup_hook(void *arg);

static void stop_poll(sock_t *t) {
  if (t->poll_inited && !uv_is_closing((uv_handle_t *)&t->poll)) {
    uv_poll_stop(&t->poll);
    uv_close((uv_handle_t *)&t->poll, on_poll_closed);
  }
}

void udp_finish_close(sock_t *t) {
  if (t->finished) return;
  /* A close that waited for a send job: JS's close() resolves now that the fd is released. */
  if (t->close_deferred && !t->finalized && !t->torn_down) {
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
    udp_emit(t, 0, 0, CLOSED_EVENT);
  }
  t->finished = 1;
  if (t->fd >= 0) {
    close(t->fd);
    t->fd = -1;
  }
  t->rbuf[0] = t->rbuf[1] = NULL;
  t->rmeta[0] = t->rmeta[1] = t->state = t->err_meta = NULL;
  napi_remove_env_cleanup_hook(t->env, cleanup_hook, t);
  napi_ref *refs[] = {&t->cb_ref,       &t->rbuf_ref[0],  &t->rbuf_ref[1],  &t->rmeta_ref[0],
                      &t->rmeta_ref[1], &t->sbuf_ref[0],  &t->sbuf_ref[1],  &t->smeta_ref[0],
                      &t->smeta_ref[1], &t->state_ref,   &t->err_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
    if (*refs[i]) napi_delete_reference(t->env, *refs[i]);
    *refs[i] = NULL;
  }
  if (t->actx) napi_async_destroy(t->env, t->actx);
  t->actx = NULL;
  if (udp_can_free(t)) udp_free(t);
}

/* A send or receive job still out keeps the fd, the buffers and the keys until it completes. */
static void do_close(sock_t *t) {
  if (t->closed) return;
  t->closed = 1;
  stop_poll(t);
  if (t->job_queued) { /* its completion sends what JS queued last, then finishes */
    t->close_deferred = 1;
    return;
  }
  if (t->sending >= 0) {       /* waiting for POLLOUT: what EAGAIN left is dropped */
    sendbuf_t *b = &t->sb[t->sending];
    t->state[S_DROPPED] += b->queued - b->next;
    t->sending = -1;
  }
  if (t->recv_out) { /* its completion finishes the close (udp_recv.c) */
    t->close_deferred = 1;
    return;
  }
  udp_finish_close(t);
}

/* Env teardown: no completion will run, so wait for a running job and close the fd here. */
static void cleanup_hook(void *arg) {
  sock_t *t = (sock_t *)arg;
  t->torn_down = 1;
  if (t->job_queued && t->job_running && uv_cancel((uv_req_t *)t->current_work) == 0) t->job_running = 0;
  udp_wait_job(t);
  udp_recv_wait(t);
  t->closed = 1;
  stop_poll(t);
  if (t->fd >= 0) {
    close(t->fd);
    t->fd = -1;
  }
}

static void finalize_sock(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  sock_t *t = (sock_t *)data;
  t->finalized = 1;
  do_close(t);
  if (udp_can_free(t)) udp_free(t);
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
  size_t argc = 14;
  napi_value argv[14];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t family = 0, port = 0, buf_bytes = 0;
  char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  void *rbuf[2], *rmeta[2], *sbuf[2], *smeta[2], *state;
  size_t rbuf_len[2], rmeta_len[2], sbuf_len[2], smeta_len[2], state_len;
  napi_valuetype cb_type = napi_undefined;
  if (argc == 14) napi_typeof(env, argv[13], &cb_type);
  if (argc < 14 || napi_get_value_int32(env, argv[0], &family) != napi_ok || (family != 4 && family != 6) ||
      !get_string(env, argv[1], host, sizeof host) || napi_get_value_int32(env, argv[2], &port) != napi_ok ||
      port < 0 || port > 65535 || napi_get_value_int32(env, argv[3], &buf_bytes) != napi_ok ||
      !get_typed(env, argv[4], napi_uint8_array, &rbuf[0], &rbuf_len[0]) || rbuf_len[0] < RECV_SLOT ||
      !get_typed(env, argv[5], napi_int32_array, &rmeta[0], &rmeta_len[0]) || rmeta_len[0] < RM_STRIDE ||
      !get_typed(env, argv[6], napi_uint8_array, &rbuf[1], &rbuf_len[1]) || rbuf_len[1] != rbuf_len[0] ||
      !get_typed(env, argv[7], napi_int32_array, &rmeta[1], &rmeta_len[1]) || rmeta_len[1] != rmeta_len[0] ||
      !get_typed(env, argv[8], napi_uint8_array, &sbuf[0], &sbuf_len[0]) || sbuf_len[0] < RECV_SLOT ||
      !get_typed(env, argv[9], napi_int32_array, &smeta[0], &smeta_len[0]) || smeta_len[0] < SM_STRIDE ||
      !get_typed(env, argv[10], napi_uint8_array, &sbuf[1], &sbuf_len[1]) || sbuf_len[1] < RECV_SLOT ||
      !get_typed(env, argv[11], napi_int32_array, &smeta[1], &smeta_len[1]) || smeta_len[1] < SM_STRIDE ||
      !get_typed(env, argv[12], napi_int32_array, &state, &state_len) || state_len < S_COUNT ||
      cb_type != napi_function) {
    napi_throw_type_error(env, NULL,
                          "UDP: open(family, address, port, bufferBytes, recvBuf0, recvMeta0, recvBuf1, "
                          "recvMeta1, sendBuf0, sendMeta0, sendBuf1, sendMeta1, state, onEvent)");
    return NULL;
  }
  addr_t bind_addr;
  socklen_t bind_len;
  if (udp_parse_addr(family, host, port, &bind_addr, &bind_len) != 0) {
    throw_errno(env, "bind", EINVAL);
    return NULL;
  }
  int fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "socket", errno);
    return NULL;
  }
  /* A kernel (or seccomp filter) without the batch calls: ENOSYS, and JS falls back to node:dgram. */
  if ((recvmmsg(fd, NULL, 0, MSG_DONTWAIT, NULL) < 0 && errno == ENOSYS) ||
      (sendmmsg(fd, NULL, 0, MSG_DONTWAIT) < 0 && errno == ENOSYS)) {
    close(fd);
    throw_errno(env, "recvmmsg", ENOSYS);
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
  t->sending = -1;
  for (int i = 0; i < 2; i++) {
    t->rbuf[i] = (uint8_t *)rbuf[i];
    t->rmeta[i] = (int32_t *)rmeta[i];
  }
  t->rslots = rbuf_len[0] / RECV_SLOT;
  t->rmeta_entries = rmeta_len[0] / RM_STRIDE;
  t->olast = -1;
  int few = few_cpus();
  const char *recv_mode = getenv("PLANETD_UDP_RECV");
  t->recv_mode = recv_mode == NULL                  ? (few ? RECV_INLINE : RECV_ADAPTIVE)
                 : strcmp(recv_mode, "inline") == 0 ? RECV_INLINE
                 : strcmp(recv_mode, "job") == 0    ? RECV_JOB
                                                    : RECV_ADAPTIVE; /* "adaptive" */
  const char *join = getenv("PLANETD_UDP_JOIN");
  t->join_runs = join == NULL || strcmp(join, "0") != 0;
  const char *send_inline = getenv("PLANETD_UDP_SEND_INLINE");
  t->send_inline_max = send_inline != NULL && *send_inline != '\0' ? atoi(send_inline)
                       : few                                         ? INT32_MAX
                                                                     : SEND_INLINE_MAX;
  for (int i = 0; i < 2; i++) {
    t->sb[i].buf = (uint8_t *)sbuf[i];
    t->sb[i].len = sbuf_len[i];
    t->sb[i].meta = (int32_t *)smeta[i];
    t->sb[i].entries = smeta_len[i] / SM_STRIDE;
  }
  t->state = (int32_t *)state;
  memset(t->state, 0, S_COUNT * sizeof(int32_t));
  t->state[S_FLAGS] = flags;
  udp_err_init(t);
  /* Without the cipher JS keeps sealing: addKey refuses every key. */
#ifdef PLANETD_HAVE_OPENSSL
  t->aead = EVP_CIPHER_CTX_new();
  if (t->aead && EVP_EncryptInit_ex(t->aead, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1) {
    EVP_CIPHER_CTX_free(t->aead);
    t->aead = NULL;
  }
  t->open_aead = EVP_CIPHER_CTX_new();
  if (t->open_aead && EVP_DecryptInit_ex(t->open_aead, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1) {
    EVP_CIPHER_CTX_free(t->open_aead);
    t->open_aead = NULL;
  }
  /* The link AEAD calls OpenSSL's primitives directly where session_chacha.c finds and checks them:
   * per ~1,400-byte datagram EVP's dispatch showed in perf beside the cipher. PLANETD_UDP_AEAD=evp
   * keeps EVP, for an A/B. */
  const char *aead = getenv("PLANETD_UDP_AEAD");
  if ((aead == NULL || strcmp(aead, "evp") != 0) && t->aead && t->open_aead) {
    t->seal_direct = direct_aead_new();
    t->open_direct = t->seal_direct ? direct_aead_new() : NULL;
    if (t->open_direct == NULL) {
      direct_aead_free(t->seal_direct);
      t->seal_direct = NULL;
    }
  }
#else
  t->aead = NULL;
  t->open_aead = NULL;
#endif
  napi_value resource_name, handle;
  uv_loop_t *loop = NULL;
  int ok = uv_mutex_init(&t->lock) == 0;
  if (ok && uv_cond_init(&t->job_idle) != 0) {
    uv_mutex_destroy(&t->lock);
    ok = 0;
  }
  t->lock_inited = ok;
  ok = ok && napi_create_reference(env, argv[13], 1, &t->cb_ref) == napi_ok &&
       napi_create_reference(env, argv[4], 1, &t->rbuf_ref[0]) == napi_ok &&
       napi_create_reference(env, argv[5], 1, &t->rmeta_ref[0]) == napi_ok &&
       napi_create_reference(env, argv[6], 1, &t->rbuf_ref[1]) == napi_ok &&
       napi_create_reference(env, argv[7], 1, &t->rmeta_ref[1]) == napi_ok &&
       napi_create_reference(env, argv[8], 1, &t->sbuf_ref[0]) == napi_ok &&
       napi_create_reference(env, argv[9], 1, &t->smeta_ref[0]) == napi_ok &&
       napi_create_reference(env, argv[10], 1, &t->sbuf_ref[1]) == napi_ok &&
       napi_create_reference(env, argv[11], 1, &t->smeta_ref[1]) == napi_ok &&
       napi_create_reference(env, argv[12], 1, &t->state_ref) == napi_ok &&
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
    t->finalized = 1; /* no handle: freed once the poll handle (if any) is closed */
    do_close(t);
    napi_throw_error(env, NULL, "UDP: internal N-API call failed");
    return NULL;
  }
  udp_update_poll(t);
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

/* open_sock for udp_err.c's calls. */
sock_t *udp_sock_arg(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  return open_sock(env, info, want, argv);
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
  int e = udp_parse_addr(t->family, host, port, &t->dests[slot], &t->dest_len[slot]);
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
      port <= 0 || port > 65535 || host[0] == '\0' || udp_parse_addr(t->family, host, port, &a, &len) != 0) {
    return int_result(env, -EINVAL);
  }
  if (connect(t->fd, &a.sa, len) != 0) return int_result(env, -errno);
  t->connected = 1;
  return int_result(env, 0);
}

static napi_value js_flush(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *t = open_sock(env, info, 2, argv);
  if (t == NULL) return NULL;
  bool wait = false;
  napi_get_value_bool(env, argv[1], &wait);
  return int_result(env, udp_flush(t, wait));
}

static napi_value js_send_fragments(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  sock_t *t = open_sock(env, info, 9, argv);
  if (t == NULL) return NULL;
  frag_run_t f;
  void *frame, *cookie;
  size_t cookie_len;
  if (!get_typed(env, argv[1], napi_uint8_array, &frame, &f.len) ||
      napi_get_value_int32(env, argv[2], &f.count) != napi_ok || napi_get_value_uint32(env, argv[3], &f.id) != napi_ok ||
      !get_typed(env, argv[4], napi_uint8_array, &cookie, &cookie_len) || cookie_len != 8 ||
      napi_get_value_uint32(env, argv[5], &f.counter_hi) != napi_ok ||
      napi_get_value_uint32(env, argv[6], &f.counter_lo) != napi_ok ||
      napi_get_value_int32(env, argv[7], &f.dest) != napi_ok || napi_get_value_int32(env, argv[8], &f.key) != napi_ok ||
      f.dest < -1 || f.dest >= MAX_DESTS || f.key < 0 || f.key >= KEY_SLOTS) {
    return int_result(env, -EINVAL);
  }
  f.frame = (const uint8_t *)frame;
  f.cookie = (const uint8_t *)cookie;
  return int_result(env, udp_queue_fragments(t, &f));
}

static napi_value js_add_key(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *t = open_sock(env, info, 2, argv);
  if (t == NULL) return NULL;
  void *key;
  size_t len;
  if (!get_typed(env, argv[1], napi_uint8_array, &key, &len) || len != KEY_BYTES) {
    napi_throw_type_error(env, NULL, "UDP: addKey(handle, key of 32 bytes)");
    return NULL;
  }
  return int_result(env, t->aead ? udp_add_key(t, (const uint8_t *)key) : -1);
}

/* dropKey(handle, slot) and dropOpenKey(handle, slot). */
static napi_value drop_slot(napi_env env, napi_callback_info info, void (*drop)(sock_t *, int)) {
  napi_value argv[2];
  sock_t *t = open_sock(env, info, 2, argv);
  if (t == NULL) return NULL;
  int32_t slot = -1;
  if (napi_get_value_int32(env, argv[1], &slot) == napi_ok) drop(t, slot);
  return NULL;
}

static napi_value js_drop_key(napi_env env, napi_callback_info info) {
  return drop_slot(env, info, udp_drop_key);
}

static napi_value js_add_open_key(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  sock_t *t = open_sock(env, info, 4, argv);
  if (t == NULL) return NULL;
  void *cookie, *key;
  size_t cookie_len, key_len;
  int32_t phase = -1;
  if (!get_typed(env, argv[1], napi_uint8_array, &cookie, &cookie_len) || cookie_len != 8 ||
      napi_get_value_int32(env, argv[2], &phase) != napi_ok || (phase != 0 && phase != 1) ||
      !get_typed(env, argv[3], napi_uint8_array, &key, &key_len) || key_len != KEY_BYTES) {
    napi_throw_type_error(env, NULL, "UDP: addOpenKey(handle, cookie of 8 bytes, phase 0 or 1, key of 32 bytes)");
    return NULL;
  }
  return int_result(env, udp_add_open_key(t, (const uint8_t *)cookie, phase, (const uint8_t *)key));
}

static napi_value js_drop_open_key(napi_env env, napi_callback_info info) {
  return drop_slot(env, info, udp_drop_open_key);
}

static napi_value js_set_ttl(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *t = open_sock(env, info, 2, argv);
  if (t == NULL) return NULL;
  int32_t ttl = 0;
  if (napi_get_value_int32(env, argv[1], &ttl) != napi_ok || ttl < 1 || ttl > 255) return int_result(env, -EINVAL);
  /* A udp6 socket also carries IPv4 (v4-mapped peers), whose datagrams take IP_TTL. */
  int r = t->family == 6 ? setsockopt(t->fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl) : 0;
  int e = r == 0 ? 0 : errno;
  if (setsockopt(t->fd, IPPROTO_IP, IP_TTL, &ttl, sizeof ttl) < 0 && t->family == 4) e = errno;
  return int_result(env, -e);
}

napi_value udp_addr_text(napi_env env, const addr_t *a) {
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
  const int32_t *m = t->rmeta[t->rcur] + RM_STRIDE * i;
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
  return udp_addr_text(env, &a);
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
  napi_value text = udp_addr_text(env, &a);
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
  do_close(t);
  napi_value out;
  CHECK(napi_get_boolean(env, t->close_deferred && !t->finished, &out));
  return out;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, NULL},
      {"setDest", NULL, js_set_dest, NULL, NULL, NULL, napi_default, NULL},
      {"connect", NULL, js_connect, NULL, NULL, NULL, napi_default, NULL},
      {"flush", NULL, js_flush, NULL, NULL, NULL, napi_default, NULL},
      {"sendFragments", NULL, js_send_fragments, NULL, NULL, NULL, napi_default, NULL},
      {"addKey", NULL, js_add_key, NULL, NULL, NULL, napi_default, NULL},
      {"dropKey", NULL, js_drop_key, NULL, NULL, NULL, napi_default, NULL},
      {"addOpenKey", NULL, js_add_open_key, NULL, NULL, NULL, napi_default, NULL},
      {"dropOpenKey", NULL, js_drop_open_key, NULL, NULL, NULL, napi_default, NULL},
      {"setTTL", NULL, js_set_ttl, NULL, NULL, NULL, napi_default, NULL},
      {"sourceText", NULL, js_source_text, NULL, NULL, NULL, napi_default, NULL},
      {"address", NULL, js_address, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL},
      {"errorHints", NULL, udp_err_hints, NULL, NULL, NULL, napi_default, NULL},
      {"errorSourceText", NULL, udp_err_source_text, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
