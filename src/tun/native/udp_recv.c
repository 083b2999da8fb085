/*
 * planetd_udp's receive path, off the JS thread: a readable wakeup hands one of the socket's two
 * receive buffers to a libuv threadpool job, which reads up to RECV_SLOTS datagrams with one
 * recvmmsg (GRO buffers split back into their datagrams) and opens in place every sealed link
 * datagram whose cookie and key phase name a registered receive key (ChaCha20-Poly1305 IETF from
 * Node's OpenSSL, what udp-seal.ts's Opener does with sodium). Its completion starts the next job
 * on the other buffer at once and then hands this one to JS, so the kernel read and the opening of
 * batch n+1 overlap JS's work on batch n. The fd is not polled for reading while a job is out;
 * a job that finds the socket empty polls again. JS keeps the replay window (a datagram opened
 * here is still refused if its counter is stale) and opens what no key here covers.
 * By default the mode adapts: a readable wakeup with no job out reads one batch on the loop thread
 * (a lone datagram at idle crosses no thread: a job costs a worker wakeup and a completion wakeup
 * per read, bench/rtt.sh); a batch that filled every slot (or held RECV_SLOTS datagrams from GRO
 * buffers) means more is waiting, so the next read goes to a job, and jobs chain while they find
 * datagrams. No inline read runs while a job is out, so none overtakes a job's batch.
 * PLANETD_UDP_RECV (read at open) fixes the mode: "job" hands every read to a job, "inline" reads
 * and opens on the loop thread, a few batches per wakeup: no thread hop, no overlap either
 * (bench/cpu-split.sh weighs the two on a given machine).
 * The worker touches only its buffer, the key slots in use, the fd, t->rmsgs.. and t->rresult;
 * keys JS drops are freed only while no job is out.
 */
#include "udp.h"

/* udp.ts's sealed types: CLOSE and the link datagrams (udp-wire.ts). */
#define PKT_CLOSE 5
#define PKT_LINK_FIRST 0x10
#define PKT_LINK_LAST 0x19

static inline int key_live(const sock_t *t, int s) {
  return __atomic_load_n(&t->okey_state[s], __ATOMIC_ACQUIRE) == 1;
}

/* The slot of the receive key for this datagram's cookie and phase, or -1. */
static int find_key(sock_t *t, const uint8_t *d) {
  int phase = d[SEAL_AD] >> 7;
  int s = t->olast;
  if (s >= 0 && key_live(t, s) && t->ophase[s] == phase && memcmp(t->ocookie[s], d + 1, 8) == 0) return s;
  int top = __atomic_load_n(&t->okey_top, __ATOMIC_ACQUIRE);
  for (s = 0; s < top; s++) {
    if (key_live(t, s) && t->ophase[s] == phase && memcmp(t->ocookie[s], d + 1, 8) == 0) {
      t->olast = s;
      return s;
    }
  }
  return -1;
}

/* Opens entry m's datagram when a key covers it; its status goes to word 8. */
static void open_entry(sock_t *t, uint8_t *buf, int32_t *m) {
  m[8] = OPEN_NONE;
  uint8_t *d = buf + m[0];
  size_t len = (size_t)m[1];
  if (t->open_aead == NULL || len < SEAL_BODY_AT + SEAL_TAG) return;
  if (d[0] != PKT_CLOSE && (d[0] < PKT_LINK_FIRST || d[0] > PKT_LINK_LAST)) return;
  int s = find_key(t, d);
  if (s < 0) return;
  if (udp_open_slot(t, s, d, len)) {
    m[8] = s;
    t->rresult.opened++;
  } else {
    m[8] = OPEN_FAILED;
    t->rresult.open_failed++;
  }
}

/* udp-link-send.ts's fragment datagram: type ‖ cookie ‖ counter ‖ REC_FRAGMENT ‖ length u16 ‖
 * frame id u32 ‖ index u8 ‖ count u8 ‖ offset u16 ‖ fragment ‖ tag (udp_send.c builds them). */
#define PKT_DATA 0x10
#define REC_FRAGMENT 2
#define FRAG_HEAD (SEAL_BODY_AT + 3 + 8)
#define MAX_FRAME 65535

static inline uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

typedef struct {
  uint32_t id;
  int index, count;
  size_t offset, len;
  uint64_t counter; /* phase bit included: one key slot's datagrams all carry the same */
} frag_t;

/* Whether entry m is a datagram this socket opened holding exactly one fragment record; its fields. */
static int fragment_of(const uint8_t *buf, const int32_t *m, frag_t *f) {
  if (m[8] < 0 || (size_t)m[1] <= FRAG_HEAD + SEAL_TAG) return 0;
  const uint8_t *d = buf + m[0];
  const uint8_t *r = d + SEAL_BODY_AT;
  if (d[0] != PKT_DATA || r[0] != REC_FRAGMENT) return 0;
  f->len = (size_t)r[1] << 8 | r[2];
  if (f->len != (size_t)m[1] - FRAG_HEAD - SEAL_TAG) return 0;
  f->id = be32(r + 3);
  f->index = r[7];
  f->count = r[8];
  f->offset = (size_t)r[9] << 8 | r[10];
  f->counter = (uint64_t)be32(d + SEAL_AD) << 32 | be32(d + SEAL_AD + 4);
  return 1;
}

/* Whether entries [i, i + count) are one frame's fragments 0..count-1 in order: one key slot and
 * source, one frame id, consecutive counters, each fragment where the last ended, all of the first
 * one's size but the last, which is no longer (the layout udp-frag.ts's Reassembler holds
 * fragments to: a run off it goes to JS, which refuses and counts it). */
static int whole_run(const uint8_t *buf, const int32_t *meta, size_t i, const frag_t *first) {
  const int32_t *m0 = meta + RM_STRIDE * i;
  size_t at = first->len;
  for (int k = 1; k < first->count; k++) {
    const int32_t *m = meta + RM_STRIDE * (i + (size_t)k);
    frag_t f;
    if (m[8] != m0[8] || memcmp(m + 2, m0 + 2, 6 * sizeof(int32_t)) != 0 || !fragment_of(buf, m, &f) ||
        f.id != first->id || f.index != k || f.count != first->count || f.offset != at ||
        f.counter != first->counter + (uint64_t)k || f.len > first->len ||
        (k < first->count - 1 && f.len != first->len))
      return 0;
    at += f.len;
  }
  return at <= MAX_FRAME;
}

/* Hands JS whole frames where it can: entries that are all the fragments of one frame, in order and
 * opened here, become one entry (type ‖ cookie ‖ first counter ‖ frame ‖ 16 spare bytes, its
 * fragments moved down over the headers between them) whose open status also carries the count
 * (OPEN_RUN_SHIFT); JS's Opener takes the whole counter range through its replay window. Anything
 * else (a missing, late, repeated or foreign fragment, a frame split across reads) stays one entry
 * per datagram for JS's reassembly. */
static void join_runs(sock_t *t, uint8_t *buf, int32_t *meta, size_t *n) {
  size_t out = 0;
  for (size_t i = 0; i < *n;) {
    int32_t *m = meta + RM_STRIDE * i;
    frag_t f;
    if (fragment_of(buf, m, &f) && f.index == 0 && f.count >= 2 && i + (size_t)f.count <= *n &&
        whole_run(buf, meta, i, &f)) {
      uint8_t *w = buf + m[0] + SEAL_BODY_AT;
      for (int k = 0; k < f.count; k++) {
        const int32_t *e = meta + RM_STRIDE * (i + (size_t)k);
        size_t part = (size_t)e[1] - FRAG_HEAD - SEAL_TAG;
        memmove(w, buf + e[0] + FRAG_HEAD, part); /* w never passes the source: headers only shrink */
        w += part;
      }
      int32_t *o = meta + RM_STRIDE * out;
      if (o != m) memcpy(o, m, RM_STRIDE * sizeof(int32_t));
      o[1] = (int32_t)(w - (buf + m[0])) + SEAL_TAG;
      o[8] = m[8] | f.count << OPEN_RUN_SHIFT;
      t->rresult.joined++;
      out++;
      i += (size_t)f.count;
      continue;
    }
    if (out != i) memcpy(meta + RM_STRIDE * out, m, RM_STRIDE * sizeof(int32_t));
    out++;
    i++;
  }
  *n = out;
}

/* One entry of recvMeta per datagram; false when recvMeta is full. */
static int add_entry(sock_t *t, int32_t *meta, size_t *n, size_t off, size_t len, const addr_t *src) {
  if (*n >= t->rmeta_entries) return 0;
  int32_t *m = meta + RM_STRIDE * *n;
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
  m[8] = OPEN_NONE;
  (*n)++;
  return 1;
}

/* The worker (or the loop thread when no request is free): one recvmmsg into buffer rfill. */
static void read_batch(sock_t *t) {
  recv_result_t *r = &t->rresult;
  uint8_t *buf = t->rbuf[t->rfill];
  int32_t *meta = t->rmeta[t->rfill];
  size_t slots = t->rslots < RECV_SLOTS ? t->rslots : RECV_SLOTS;
  for (size_t i = 0; i < slots; i++) {
    t->riov[i].iov_base = buf + i * RECV_SLOT;
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
  r->err = udp_err_reported(t, pending);
  if (got <= 0) return;
  r->got_all = got == (int)slots;
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
      r->gro_bufs++;
      for (size_t at = 0; at < len; at += (size_t)gso) {
        size_t part = len - at < (size_t)gso ? len - at : (size_t)gso;
        if (!add_entry(t, meta, &n, off + at, part, &t->rsrc[i])) r->trunc++;
      }
    } else if (!add_entry(t, meta, &n, off, len, &t->rsrc[i])) {
      r->trunc++;
    }
  }
  for (size_t i = 0; i < n; i++) open_entry(t, buf, meta + RM_STRIDE * i);
  if (t->join_runs) join_runs(t, buf, meta, &n);
  r->entries = (int32_t)n;
}

static void recv_run(uv_work_t *w) {
  sock_t *t = (sock_t *)w->data;
  read_batch(t);
  uv_mutex_lock(&t->lock);
  t->recv_running = 0;
  uv_cond_signal(&t->job_idle);
  uv_mutex_unlock(&t->lock);
}

/* Dropped keys no job can be using any more (none is out) are free for the next registration. */
static void reclaim_open_keys(sock_t *t) {
  if (t->recv_out) return;
  for (int s = 0; s < t->okey_top; s++) {
    if (t->okey_state[s] == 2) {
      udp_key_wipe(t->open_ctx[s]);
      udp_wipe_raw_key(t->open_key[s]);
      t->okey_state[s] = 0;
    }
  }
}

static void recv_done(uv_work_t *w, int status);
static void recv_complete(sock_t *t, int status, int from_job, int next_job);

/* Hands buffer rfill to a threadpool job; false when no job could be queued. */
static int queue_recv(sock_t *t, int err_after) {
  memset(&t->rresult, 0, sizeof t->rresult);
  t->recv_err_after = err_after;
  uv_loop_t *loop = NULL;
  if (t->rwork_pending || napi_get_uv_event_loop(t->env, &loop) != napi_ok) return 0;
  t->rwork.data = t;
  t->recv_out = 1;
  t->recv_running = 1;
  t->rwork_pending = 1;
  if (uv_queue_work(loop, &t->rwork, recv_run, recv_done) == 0) return 1;
  t->recv_out = 0;
  t->rwork_pending = 0;
  t->recv_running = 0;
  return 0;
}

void udp_recv_start(sock_t *t, int err) {
  if (t->recv_out) {
    if (err != 0 && t->recv_err_after == 0) t->recv_err_after = err;
    return;
  }
  if (t->closed || t->fd < 0) return;
  if (t->recv_mode == RECV_JOB && queue_recv(t, err)) {
    udp_update_poll(t);
    return;
  }
  /* This thread reads and opens: adaptive, one batch, and a full one hands the next read to a job;
   * inline (or no threadpool), a few batches, and the poll brings the rest. */
  int rounds = t->recv_mode == RECV_ADAPTIVE ? 1 : 4;
  for (int round = 0; round < rounds && !t->closed; round++) {
    memset(&t->rresult, 0, sizeof t->rresult);
    t->recv_err_after = round == 0 ? err : 0;
    t->recv_out = 1;
    read_batch(t);
    int more = t->rresult.got_all && t->rresult.err == 0;
    /* Adaptive: every slot filled, or as many datagrams from GRO buffers, means a busy link. */
    int busy = (t->rresult.got_all || t->rresult.entries >= RECV_SLOTS) && t->rresult.err == 0;
    recv_complete(t, 0, 0, busy && t->recv_mode == RECV_ADAPTIVE);
    if (!more) break;
  }
}

static void recv_done(uv_work_t *w, int status) {
  sock_t *t = (sock_t *)w->data;
  t->rwork_pending = 0;
  if (t->torn_down) return; /* the env is gone: its cleanup hook closed the fd already */
  if (!t->recv_out) { /* completed already (a close that could not wait for it) */
    if (t->finished && udp_can_free(t)) udp_free(t);
    return;
  }
  recv_complete(t, status, 1, t->rresult.entries > 0 && t->rresult.err == 0);
}

/* Applies a read's counts (from_job: a threadpool job's), starts a job on the other buffer
 * (next_job: a job found datagrams, more are likely on their way; or an inline read filled every
 * slot), then hands this one to JS. */
static void recv_complete(sock_t *t, int status, int from_job, int next_job) {
  recv_result_t r = t->rresult;
  int filled = t->rfill;
  int err_after = t->recv_err_after;
  t->recv_out = 0;
  t->recv_err_after = 0;
  reclaim_open_keys(t);
  if (t->closed) { /* the deferred close, unless a send job still holds the fd */
    if (!t->finished && !udp_jobs_out(t)) udp_finish_close(t); /* may free t */
    else if (t->finished && udp_can_free(t)) udp_free(t);
    return;
  }
  if (status == UV_ECANCELED) r.entries = 0;
  int32_t *st = t->state;
  st[S_GRO_BUFS] += r.gro_bufs;
  st[S_RECV_TRUNC] += r.trunc;
  st[S_OPENED] += r.opened;
  st[S_OPEN_FAILED] += r.open_failed;
  st[S_JOINED] += r.joined;
  if (from_job) {
    st[S_RECV_JOBS]++;
  } else {
    st[S_RECV_INLINE]++;
    st[S_OPENED_INLINE] += r.opened;
  }
  /* The next read goes out now, before JS runs (an empty one polls again). */
  if (next_job && status != UV_ECANCELED) {
    t->rfill = filled ^ 1;
    if (!queue_recv(t, 0)) t->rfill = filled; /* the poll asks again */
  }
  udp_update_poll(t);
  if (r.entries > 0) {
    t->rcur = filled;
    st[S_RBUF] = filled;
    udp_emit(t, r.entries, 0, -2);
  }
  if (r.err != 0 && !t->closed) udp_emit(t, 0, r.err, -2);
  if (err_after != 0 && !t->closed) udp_emit(t, 0, err_after, -2);
}

void udp_recv_wait(sock_t *t) {
  if (!t->lock_inited) return;
  if (t->recv_running && uv_cancel((uv_req_t *)&t->rwork) == 0) t->recv_running = 0;
  uv_mutex_lock(&t->lock);
  while (t->recv_running) uv_cond_wait(&t->job_idle, &t->lock);
  uv_mutex_unlock(&t->lock);
}

int udp_add_open_key(sock_t *t, const uint8_t *cookie, int phase, const uint8_t *key) {
  if (t->open_aead == NULL) return -1;
  reclaim_open_keys(t);
  for (int s = 0; s < OPEN_SLOTS; s++) {
    if (t->okey_state[s] != 0) continue;
    /* A free slot: no job touches its context (its state is not 1 until the release below). */
    if (!udp_key_ctx(&t->open_ctx[s], key, 0)) break; /* counted as refused: JS opens */
    memcpy(t->open_key[s], key, KEY_BYTES);
    memcpy(t->ocookie[s], cookie, 8);
    t->ophase[s] = (uint8_t)(phase & 1);
    if (s >= t->okey_top) __atomic_store_n(&t->okey_top, s + 1, __ATOMIC_RELEASE);
    __atomic_store_n(&t->okey_state[s], 1, __ATOMIC_RELEASE);
    return s;
  }
  t->state[S_OPEN_KEYS_REFUSED]++;
  return -1;
}

void udp_drop_open_key(sock_t *t, int slot) {
  if (slot < 0 || slot >= OPEN_SLOTS || t->okey_state[slot] != 1) return;
  __atomic_store_n(&t->okey_state[slot], 2, __ATOMIC_RELEASE);
  reclaim_open_keys(t);
}
