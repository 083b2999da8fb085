/*
 * planetd_udp's receive path: one recvmmsg per readable wakeup (GRO buffers split into their
 * datagrams), and the writable poll that resumes what EAGAIN left of a send job (udp_send.c).
 * udp.c has the interface.
 */
#include "udp.h"

void udp_emit(sock_t *t, int count, int err, int slot) {
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
  int got, pending = 0;
  for (int attempt = 0; attempt < 2; attempt++) {
    do {
      got = recvmmsg(t->fd, t->rmsgs, (unsigned)slots, 0, NULL);
    } while (got < 0 && errno == EINTR);
    if (got >= 0 || errno == EAGAIN || errno == EWOULDBLOCK || pending != 0) break;
    /* The kernel reports a socket error (an ICMP port unreachable) before the datagrams queued
     * ahead of it, and clears it: those go to JS first (a peer's CLOSE before the refusal its
     * closed port drew), the error after them. */
    pending = errno;
  }
  if (got < 0) {
    if (pending != 0) udp_emit(t, 0, pending, -2);
    return pending != 0 && !t->closed;
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
  if (n > 0) udp_emit(t, (int)n, 0, -2);
  if (pending != 0 && !t->closed) udp_emit(t, 0, pending, -2);
  return got == (int)slots && !t->closed;
}

void udp_on_poll(uv_poll_t *h, int status, int events) {
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
      /* Datagrams that came before the error go first (the kernel would report the error first):
       * a peer's CLOSE is read before the port unreachable its closed socket drew. */
      for (int round = 0; round < 4 && !t->closed; round++) {
        if (!receive_batch(t)) break;
      }
      if (t->closed) return;
      udp_emit(t, 0, err, -2);
      udp_set_poll(t, wanted);
    } else {
      udp_emit(t, 0, -status, -2);
    }
    return;
  }
  if (events & UV_WRITABLE) {
    /* Once: the job's completion asks for POLLOUT again if EAGAIN comes back. */
    udp_set_poll(t, UV_READABLE);
    udp_resume(t);
  }
  /* A few batches per wakeup; the level-triggered poll comes back for the rest. */
  for (int round = 0; round < 4 && !t->closed && (events & UV_READABLE); round++) {
    if (!receive_batch(t)) break;
  }
}

void udp_set_poll(sock_t *t, int events) {
  if (t->closed || t->poll_events == events) return;
  if (uv_poll_start(&t->poll, events, udp_on_poll) == 0) t->poll_events = events;
}

int udp_parse_addr(int family, const char *text, int port, addr_t *out, socklen_t *len) {
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
