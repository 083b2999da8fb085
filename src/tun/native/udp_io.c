/*
 * planetd_udp's poll: a readable wakeup starts a receive job (udp_recv.c), a writable one resumes
 * what EAGAIN left of a send job (udp_send.c); and the call into JS. udp.c has the interface.
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

void udp_on_poll(uv_poll_t *h, int status, int events) {
  sock_t *t = (sock_t *)h->data;
  if (t->closed) return;
  if (status < 0) {
    /* libuv stops the poll on POLLERR: a socket error (ECONNREFUSED from an ICMP error on a
     * connected socket) is read and cleared here, and reported after the datagrams that came
     * before it (a peer's CLOSE before the port unreachable its closed socket drew). */
    int err = 0;
    socklen_t len = sizeof err;
    t->poll_events = 0;
    /* With IP_RECVERR the error queue raises POLLERR too: its ICMP errors go to JS as hints. */
    int refused = 0;
    int queued = udp_err_drain(t, &refused);
    if (t->closed) return;
    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0) err = refused;
    if (err != 0 || queued > 0) {
      err = udp_err_reported(t, err);
      if (err != 0) udp_recv_start(t, err);
      udp_update_poll(t);
    } else {
      udp_emit(t, 0, -status, -2);
    }
    return;
  }
  if (events & UV_WRITABLE) {
    /* Once: the job's completion asks for POLLOUT again if EAGAIN comes back. */
    t->want_write = 0;
    udp_update_poll(t);
    udp_resume(t);
  }
  if ((events & UV_READABLE) && !t->closed) udp_recv_start(t, 0);
}

void udp_update_poll(sock_t *t) {
  if (t->closed || !t->poll_inited) return;
  int events = (t->recv_out ? 0 : UV_READABLE) | (t->want_write ? UV_WRITABLE : 0);
  if (t->poll_events == events) return;
  if (events == 0) {
    uv_poll_stop(&t->poll);
    t->poll_events = 0;
  } else if (uv_poll_start(&t->poll, events, udp_on_poll) == 0) {
    t->poll_events = events;
  }
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
