/*
 * planetd_udp: ICMP errors as liveness hints (IP_RECVERR / IPV6_RECVERR). Without them the kernel
 * tells an unconnected socket (a listener's, serving many peers) nothing when a peer's port is
 * closed, and that peer's link waits for silence (udp-liveness.ts: 8 to 10 s) while every datagram
 * sent there draws a port unreachable. With them the kernel queues each ICMP error on the socket's
 * error queue, with the destination of the datagram that drew it, and raises POLLERR: the poll
 * (udp_io.c) calls udp_err_drain, which reads the queue on the loop thread into the entries JS
 * registered (errorHints: ERR_STRIDE words each) and calls onEvent(count, 0, ERR_EVENT) once. An
 * ICMP error is unauthenticated: JS takes it as a hint for the link at that address, never as a
 * close (udp-native-errors.ts, udp-link.ts).
 *
 * The kernel also sets the socket error (sk_err) for each, and the next send or receive returns it
 * whatever its destination: on an unconnected socket that error says nothing about the call that
 * met it, so a receive does not report it (udp_err_reported); and on any socket a send refused
 * with it goes again (udp_err_stale): the error queue has told JS already, and a forged error must
 * not cost a datagram. A connected socket (a dialer's) reports ECONNREFUSED to JS as it always did:
 * reading the queue clears the socket error, so udp_err_drain hands it back (*refused).
 * PLANETD_UDP_RECVERR=0 at open turns it all off (the tests measure the silence without hints).
 */
#include "udp.h"
#include <time.h>
#include <linux/errqueue.h>

void udp_err_init(sock_t *t) {
  const char *env = getenv("PLANETD_UDP_RECVERR");
  if (env != NULL && strcmp(env, "0") == 0) return;
  int one = 1;
  /* A udp6 socket carries IPv4 too (v4-mapped peers), whose errors IP_RECVERR queues. */
  int v6 = t->family != 6 || setsockopt(t->fd, IPPROTO_IPV6, IPV6_RECVERR, &one, sizeof one) == 0;
  int v4 = setsockopt(t->fd, IPPROTO_IP, IP_RECVERR, &one, sizeof one) == 0;
  t->recverr = v6 && (v4 || t->family == 6);
}

/* The errnos an ICMP error sets on a UDP socket (icmp_err_convert, icmpv6_err_convert), EMSGSIZE
 * aside: a datagram too big is the size search's business (udp-pmtu.ts), not the peer's liveness. */
static int icmp_errno(int e) {
  return e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == EHOSTDOWN || e == ENONET ||
         e == ENOPROTOOPT || e == EPROTO || e == EACCES || e == EMSGSIZE;
}

int udp_err_reported(const sock_t *t, int err) {
  if (!t->recverr || !icmp_errno(err)) return err;
  return t->connected && err == ECONNREFUSED ? err : 0;
}

int udp_err_stale(const sock_t *t, int e) {
  return t->recverr && icmp_errno(e);
}

int udp_err_drain(sock_t *t, int *refused) {
  *refused = 0;
  if (!t->recverr) return 0;
  int read = 0, n = 0;
  size_t room = t->err_meta == NULL ? 0 : (t->err_entries < ERR_SLOTS ? t->err_entries : ERR_SLOTS);
  /* At most ERR_SLOTS a wakeup: what is left raises POLLERR again on the next turn of the loop. */
  while (read < ERR_SLOTS) {
    addr_t dst;
    uint8_t quote[16];
    union {
      struct cmsghdr align;
      char buf[CMSG_SPACE(sizeof(struct sock_extended_err) + sizeof(struct sockaddr_in6))];
    } ctl;
    struct iovec iov = {quote, sizeof quote};
    struct msghdr h;
    memset(&h, 0, sizeof h);
    memset(&dst, 0, sizeof dst);
    h.msg_name = &dst;
    h.msg_namelen = sizeof dst;
    h.msg_iov = &iov;
    h.msg_iovlen = 1;
    h.msg_control = ctl.buf;
    h.msg_controllen = sizeof ctl.buf;
    if (recvmsg(t->fd, &h, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    read++;
    struct sock_extended_err ee;
    int found = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c != NULL; c = CMSG_NXTHDR(&h, c)) {
      /* The length check: a control message cut short (MSG_CTRUNC) must not be read past its end. */
      if (((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
           (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR)) &&
          c->cmsg_len >= CMSG_LEN(sizeof ee)) {
        memcpy(&ee, CMSG_DATA(c), sizeof ee);
        found = 1;
      }
    }
    if (!found || (ee.ee_origin != SO_EE_ORIGIN_ICMP && ee.ee_origin != SO_EE_ORIGIN_ICMP6)) continue;
    /* Reading the last one cleared the socket error: a connected socket's refusal is said here. */
    if (t->connected && ee.ee_errno == ECONNREFUSED) *refused = ECONNREFUSED;
    /* Time exceeded (a hole punch's low hop limit ran out on the way, or a loop) says nothing of
     * the peer. */
    int expired = ee.ee_origin == SO_EE_ORIGIN_ICMP ? ee.ee_type == 11 : ee.ee_type == 3;
    if (expired || ee.ee_errno == EMSGSIZE || !icmp_errno((int)ee.ee_errno) || (size_t)n >= room) continue;
    int32_t *m = t->err_meta + ERR_STRIDE * n;
    memset(m, 0, ERR_STRIDE * sizeof *m);
    if (dst.sa.sa_family == AF_INET6) {
      m[0] = ntohs(dst.v6.sin6_port);
      memcpy(&m[1], &dst.v6.sin6_addr, 16);
      m[5] = (int32_t)dst.v6.sin6_scope_id;
    } else if (dst.sa.sa_family == AF_INET) {
      m[0] = ntohs(dst.v4.sin_port);
      memcpy(&m[1], &dst.v4.sin_addr, 4);
    } else {
      continue; /* no destination given: nothing to hint */
    }
    m[6] = (int32_t)ee.ee_errno;
    t->err_src[n] = dst;
    n++;
  }
  if (n > 0 && !t->closed) udp_emit(t, n, 0, ERR_EVENT);
  return read;
}

/* errorHints(handle, entries: Int32Array of ERR_STRIDE words each): where the hints go. */
napi_value udp_err_hints(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *t = udp_sock_arg(env, info, 2, argv);
  if (t == NULL) return NULL;
  bool is_ta = false;
  napi_typedarray_type type;
  void *data = NULL;
  size_t len = 0;
  napi_is_typedarray(env, argv[1], &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, argv[1], &type, &len, &data, NULL, NULL) != napi_ok ||
      type != napi_int32_array || len < ERR_STRIDE) {
    napi_throw_type_error(env, NULL, "UDP: errorHints(handle, Int32Array of 7-word entries)");
    return NULL;
  }
  if (t->err_ref) napi_delete_reference(env, t->err_ref);
  t->err_ref = NULL;
  if (napi_create_reference(env, argv[1], 1, &t->err_ref) != napi_ok) {
    t->err_meta = NULL;
    return NULL;
  }
  t->err_meta = (int32_t *)data;
  t->err_entries = len / ERR_STRIDE;
  napi_value out;
  napi_get_boolean(env, t->recverr != 0, &out);
  return out;
}

/* errorSourceText(handle, i): entry i of the last hints' destination as text (Node's form). */
napi_value udp_err_source_text(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  sock_t *t = udp_sock_arg(env, info, 2, argv);
  if (t == NULL) return NULL;
  int32_t i = -1;
  if (napi_get_value_int32(env, argv[1], &i) != napi_ok || i < 0 || i >= ERR_SLOTS) {
    napi_throw_range_error(env, NULL, "UDP: no such error entry");
    return NULL;
  }
  return udp_addr_text(env, &t->err_src[i]);
}
