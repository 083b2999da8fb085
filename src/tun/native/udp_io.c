/*
 * planetd_udp's data path: one recvmmsg per readable wakeup (GRO buffers split into their
 * datagrams), sendmmsg with UDP_SEGMENT for runs of equal-size datagrams, and the writable poll
 * that sends what EAGAIN left queued. udp.c has the interface.
 */
#include "udp.h"

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
      emit(t, 0, err, -2);
      udp_set_poll(t, wanted);
    } else {
      emit(t, 0, -status, -2);
    }
    return;
  }
  if (events & UV_WRITABLE) {
    int e = udp_flush(t);
    if (e != 0 && !t->closed) emit(t, 0, e, t->state[S_ERR_SLOT]);
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

int udp_flush(sock_t *t) {
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
  udp_set_poll(t, left > 0 ? UV_READABLE | UV_WRITABLE : UV_READABLE);
  return first_err;
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
