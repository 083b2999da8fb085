/*
 * planetd_udp's send path, off the JS thread: JS fills one of two send buffers (udp.c's header
 * describes the layout) and flush() hands it to a libuv threadpool job, which seals the datagrams
 * that name a key slot (ChaCha20-Poly1305 IETF from Node's OpenSSL, byte for byte what
 * udp-seal.ts's Sealer does with sodium) and sends them with sendmmsg, equal-size runs as one
 * UDP_SEGMENT message. At most one job per socket is out, so datagrams leave in the order queued;
 * JS fills the other buffer meanwhile, and the completion hands it over in turn. EAGAIN leaves the
 * rest of the job's buffer for the writable wakeup (the buffer stays the job's, so order holds).
 * A flush of a few datagrams (t->send_inline_max, PLANETD_UDP_SEND_INLINE, default SEND_INLINE_MAX)
 * with no job out is sealed and sent here on the loop thread: at idle a lone datagram then costs
 * no worker wakeup and no completion wakeup (bench/rtt.sh); a busy link's larger flushes and the
 * buffer a completion hands over still go to the job, and nothing goes inline while a job is out.
 * The worker touches only its buffer, the key slots its entries name, the fd and t->result; every
 * count reaches state[] on the loop thread, in udp_job_done.
 */
#include "udp.h"

/* Seals (enc) or opens d (len bytes: header ‖ counter ‖ body ‖ tag) in place: udp-seal.ts's AEAD.
 * An open that fails leaves the body garbage (the caller drops the datagram). */
#ifdef PLANETD_HAVE_OPENSSL
int udp_aead(EVP_CIPHER_CTX *c, uint8_t *d, size_t len, int enc) {
  uint8_t nonce[12] = {0};
  int outl = 0;
  size_t body = len - SEAL_BODY_AT - SEAL_TAG;
  uint8_t *tag = d + len - SEAL_TAG;
  memcpy(nonce + 4, d + SEAL_AD, 8);
  if (EVP_CipherInit_ex(c, NULL, NULL, NULL, nonce, enc) != 1) return 0;
  if (EVP_CipherUpdate(c, NULL, &outl, d, SEAL_AD) != 1) return 0;
  if (body > 0 && EVP_CipherUpdate(c, d + SEAL_BODY_AT, &outl, d + SEAL_BODY_AT, (int)body) != 1) return 0;
  if (!enc && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, SEAL_TAG, tag) != 1) return 0;
  if (EVP_CipherFinal_ex(c, d + SEAL_BODY_AT + body, &outl) != 1) return 0;
  return !enc || EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, SEAL_TAG, tag) == 1;
}

int udp_key_ctx(EVP_CIPHER_CTX **c, const uint8_t *key, int enc) {
  if (*c == NULL && (*c = EVP_CIPHER_CTX_new()) == NULL) return 0;
  if (EVP_CipherInit_ex(*c, EVP_chacha20_poly1305(), NULL, key, NULL, enc) == 1) return 1;
  EVP_CIPHER_CTX_reset(*c);
  return 0;
}

void udp_key_wipe(EVP_CIPHER_CTX *c) {
  if (c != NULL) EVP_CIPHER_CTX_reset(c); /* frees the cipher state, key schedule cleansed */
}

void udp_ctx_free(EVP_CIPHER_CTX *c) {
  EVP_CIPHER_CTX_free(c);
}
#else
/* Unreachable: without OpenSSL no socket has a cipher, so no key gets a slot. */
int udp_aead(EVP_CIPHER_CTX *c, uint8_t *d, size_t len, int enc) {
  (void)c, (void)d, (void)len, (void)enc;
  return 0;
}
int udp_key_ctx(EVP_CIPHER_CTX **c, const uint8_t *key, int enc) {
  (void)c, (void)key, (void)enc;
  return 0;
}
void udp_key_wipe(EVP_CIPHER_CTX *c) {
  (void)c;
}
void udp_ctx_free(EVP_CIPHER_CTX *c) {
  (void)c;
}
#endif

/* d's AEAD as session_chacha.c computes it. That code wants the AD right before the body, and here
 * the counter (the nonce) lies between them, so the AD is put there for the call and d's header
 * restored after it: 17 bytes moved against ~1,400 sealed, where EVP re-ran its provider dispatch
 * (re-init, the tag through an OSSL_PARAM list walked with strcmp) for every datagram. */
static int direct_datagram(direct_aead_t *c, const uint8_t *key, uint8_t *d, size_t len, int enc) {
  uint8_t head[SEAL_BODY_AT];
  memcpy(head, d, SEAL_BODY_AT);
  uint32_t hi = (uint32_t)d[9] << 24 | (uint32_t)d[10] << 16 | (uint32_t)d[11] << 8 | d[12];
  uint32_t lo = (uint32_t)d[13] << 24 | (uint32_t)d[14] << 16 | (uint32_t)d[15] << 8 | d[16];
  uint8_t *buf = d + SEAL_BODY_AT - SEAL_AD;
  memcpy(buf, head, SEAL_AD);
  int ok = 1;
  if (enc) direct_aead_seal(c, key, hi, lo, buf, SEAL_AD, len - SEAL_TAG - (SEAL_BODY_AT - SEAL_AD));
  else ok = direct_aead_open(c, key, hi, lo, buf, SEAL_AD, len - (SEAL_BODY_AT - SEAL_AD), d + SEAL_BODY_AT);
  memcpy(d, head, SEAL_BODY_AT);
  return ok;
}

int udp_seal_slot(sock_t *t, int slot, uint8_t *d, size_t len) {
  if (t->seal_direct != NULL) return direct_datagram(t->seal_direct, t->seal_key[slot], d, len, 1);
  return udp_aead(t->seal_ctx[slot], d, len, 1);
}

int udp_open_slot(sock_t *t, int slot, uint8_t *d, size_t len) {
  if (t->open_direct != NULL) return direct_datagram(t->open_direct, t->open_key[slot], d, len, 0);
  return udp_aead(t->open_ctx[slot], d, len, 0);
}

void udp_wipe_raw_key(uint8_t *key) {
  explicit_bzero(key, KEY_BYTES);
}

/* Seals what is still unsealed from b->next on; an entry that cannot be sealed is never sent. */
static void seal_entries(sock_t *t, sendbuf_t *b) {
  for (int32_t j = b->next; j < b->queued; j++) {
    int32_t *m = b->meta + SM_STRIDE * j;
    int32_t slot = m[3];
    if (slot == KEY_NONE || slot == KEY_FAILED) continue;
    int ok = slot >= 0 && slot < KEY_SLOTS && t->key_state[slot] != 0 && m[1] >= SEAL_BODY_AT + SEAL_TAG &&
             udp_seal_slot(t, slot, b->buf + m[0], (size_t)m[1]);
    m[3] = ok ? KEY_NONE : KEY_FAILED;
  }
}

/* Sends b from b->next until done or EAGAIN; the counts go to t->result. */
static void send_entries(sock_t *t, sendbuf_t *b) {
  job_result_t *r = &t->result;
  int32_t queued = b->queued;
  int32_t i = b->next;
  int blocked = 0, stale_retries = 0;
  while (i < queued && !blocked) {
    int nmsg = 0;
    int32_t j = i;
    while (j < queued && nmsg < SEND_MSGS) {
      int32_t *m = b->meta + SM_STRIDE * j;
      int32_t off = m[0], len = m[1], slot = m[2];
      if (m[3] == KEY_FAILED || off < 0 || len <= 0 || (size_t)off + (size_t)len > b->len) {
        if (nmsg > 0) break; /* the batch before it goes first; the next round skips it */
        r->seal_failed++;
        r->dropped++;
        i = ++j;
        continue;
      }
      int32_t k = j + 1;
      size_t total = (size_t)len;
      if (r->gso && j >= b->nogso_until) {
        while (k < queued && k - j < GSO_MAX_SEGS) {
          int32_t *n = b->meta + SM_STRIDE * k;
          if (n[2] != slot || n[3] == KEY_FAILED || n[1] > len || n[0] != off + (int32_t)total ||
              total + n[1] > GSO_MAX_BYTES)
            break;
          total += (size_t)n[1];
          k++;
          if (n[1] < len) break; /* a shorter one ends the run */
        }
      }
      struct msghdr *h = &t->smsgs[nmsg].msg_hdr;
      memset(h, 0, sizeof *h);
      t->siov[nmsg].iov_base = b->buf + off;
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
      int n = sendmmsg(t->fd, t->smsgs + done, (unsigned)(nmsg - done), 0);
      if (n > 0) {
        for (int x = done; x < done + n; x++) {
          r->sent += t->sentries[x];
          if (t->sentries[x] > 1) r->gso_msgs++;
          i += t->sentries[x];
        }
        done += n;
        continue;
      }
      int e = n == 0 ? EAGAIN : errno;
      if (e == EINTR) continue;
      if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) {
        blocked = 1;
        break;
      }
      /* An ICMP error the error queue reports (udp_err.c), not this datagram's refusal: sent again. */
      if (stale_retries++ < 4 && udp_err_stale(t, e)) continue;
      int count = t->sentries[done];
      if (count > 1 && (e == EIO || e == EINVAL || e == EMSGSIZE || e == EOPNOTSUPP)) {
        /* The device or route cannot take this GSO message: its datagrams go one by one. */
        b->nogso_until = i + count;
        if (e == EIO || e == EOPNOTSUPP) {
          r->gso_refused = 1;
          r->gso = 0;
        }
        break;
      }
      r->dropped += count;
      if (r->err == 0) {
        r->err = e;
        r->err_slot = b->meta[SM_STRIDE * i + 2];
      }
      i += count;
      done++;
    }
  }
  b->next = i;
}

static void job_run(uv_work_t *w) {
  sock_t *t = (sock_t *)w->data;
  sendbuf_t *b = &t->sb[t->sending];
  seal_entries(t, b);
  send_entries(t, b);
  uv_mutex_lock(&t->lock);
  t->job_running = 0;
  uv_cond_signal(&t->job_idle);
  uv_mutex_unlock(&t->lock);
}

static void job_done(uv_work_t *w, int status);
static int complete_job(sock_t *t, int status, int inline_done);

/* Hands the buffer t->sending to a job, or with here (or no request free) does it on this thread,
 * its refusal kept for the next flush to return. */
static void queue_job(sock_t *t, int here) {
  uv_loop_t *loop = NULL;
  memset(&t->result, 0, sizeof t->result);
  t->result.gso = (t->state[S_FLAGS] & F_GSO) != 0;
  t->job_queued = 1;
  int k = !t->work_pending[0] ? 0 : !t->work_pending[1] ? 1 : -1;
  if (!here && k >= 0 && napi_get_uv_event_loop(t->env, &loop) == napi_ok) {
    uv_work_t *w = &t->works[k];
    w->data = t;
    t->current_work = w;
    t->job_running = 1;
    t->work_pending[k] = 1;
    if (uv_queue_work(loop, w, job_run, job_done) == 0) {
      t->state[S_SEND_JOBS]++;
      return;
    }
    t->work_pending[k] = 0;
    t->job_running = 0;
  }
  /* No request free (both await their callbacks) or no threadpool: this thread does the job. */
  t->state[S_SEND_INLINE]++;
  sendbuf_t *b = &t->sb[t->sending];
  seal_entries(t, b);
  send_entries(t, b);
  int e = complete_job(t, 0, 1);
  if (e != 0) t->deferred_err = e;
}

/* Keys JS dropped whose last datagram has left are free for the next registration. */
static void reclaim_keys(sock_t *t) {
  for (int s = 0; s < KEY_SLOTS; s++) {
    if (t->key_state[s] == 2 && (int32_t)(t->completed - t->key_free_after[s]) >= 0) {
      udp_key_wipe(t->seal_ctx[s]);
      udp_wipe_raw_key(t->seal_key[s]);
      t->key_state[s] = 0;
    }
  }
}

int udp_add_key(sock_t *t, const uint8_t *key) {
  reclaim_keys(t);
  for (int s = 0; s < KEY_SLOTS; s++) {
    if (t->key_state[s] == 0) {
      if (!udp_key_ctx(&t->seal_ctx[s], key, 1)) break; /* counted as refused: JS seals */
      memcpy(t->seal_key[s], key, KEY_BYTES);
      t->key_state[s] = 1;
      return s;
    }
  }
  t->state[S_KEYS_REFUSED]++;
  return -1;
}

void udp_drop_key(sock_t *t, int slot) {
  if (slot < 0 || slot >= KEY_SLOTS || t->key_state[slot] != 1) return;
  /* Datagrams naming it may wait in the job's buffer and in the one JS fills (the next submitted). */
  t->key_state[slot] = 2;
  t->key_free_after[slot] = t->submitted + (t->state[S_QUEUED] > 0 ? 1 : 0);
  reclaim_keys(t);
}

/* Hands the buffer JS filled on; from_flush: JS's flush, which may do a small one here. */
static void submit(sock_t *t, int from_flush) {
  if (t->sending >= 0 || t->fd < 0) return;
  int32_t queued = t->state[S_QUEUED];
  int fill = t->state[S_FILL] & 1;
  sendbuf_t *b = &t->sb[fill];
  if (queued <= 0 || (size_t)queued > b->entries) return;
  b->queued = queued;
  b->bytes = t->state[S_BYTES];
  b->next = 0;
  b->nogso_until = 0;
  t->sending = fill;
  t->submitted++;
  t->state[S_FILL] = fill ^ 1;
  t->state[S_QUEUED] = 0;
  t->state[S_BYTES] = 0;
  t->state[S_INFLIGHT] = b->bytes;
  queue_job(t, from_flush && queued <= t->send_inline_max);
}

int udp_flush(sock_t *t, int wait) {
  int e = 0;
  if (wait && t->job_queued) {
    /* JS outran the send thread: it waits here, as it did when it sent itself, rather than drop. */
    udp_wait_job(t);
    e = complete_job(t, 0, 1);
  }
  submit(t, 1);
  if (e == 0) { /* one refusal a flush: a second waits for the next */
    e = t->deferred_err;
    t->deferred_err = 0;
  }
  return e;
}

void udp_resume(sock_t *t) {
  if (t->sending < 0 || t->job_queued) return;
  queue_job(t, 0);
  if (t->deferred_err != 0 && !t->job_queued && !t->closed) {
    int e = t->deferred_err;
    t->deferred_err = 0;
    udp_emit(t, 0, e, t->state[S_ERR_SLOT]);
  }
}

void udp_wait_job(sock_t *t) {
  if (!t->lock_inited) return;
  uv_mutex_lock(&t->lock);
  while (t->job_running) uv_cond_wait(&t->job_idle, &t->lock);
  uv_mutex_unlock(&t->lock);
}

static void job_done(uv_work_t *w, int status) {
  sock_t *t = (sock_t *)w->data;
  t->work_pending[w == &t->works[1]] = 0;
  if (t->torn_down) return; /* the env is gone: its cleanup hook closed the fd already */
  /* A flush that waited completed this job already; a newer one may be out. */
  int current = t->job_queued && w == t->current_work;
  if (current) {
    /* A closed socket may be freed inside complete_job (udp_finish_close): not touched after. */
    int was_closed = t->closed;
    int e = complete_job(t, status, 0);
    if (e != 0 && !was_closed && !t->closed) udp_emit(t, 0, e, t->result.err_slot);
  } else if (t->finished && udp_can_free(t)) {
    udp_free(t);
  }
}

/* Applies a finished job's counts and moves on: POLLOUT on EAGAIN, else the next buffer (or the
 * deferred close). The errno of a refused datagram is returned for the caller to report. */
static int complete_job(sock_t *t, int status, int inline_done) {
  t->job_queued = 0;
  sendbuf_t *b = &t->sb[t->sending];
  job_result_t *r = &t->result;
  int32_t *st = t->state;
  int err = r->err;
  st[S_SENT] += r->sent;
  st[S_GSO_MSGS] += r->gso_msgs;
  st[S_DROPPED] += r->dropped;
  st[S_SEAL_FAILED] += r->seal_failed;
  if (err != 0) st[S_ERR_SLOT] = r->err_slot;
  if (r->gso_refused) st[S_FLAGS] &= ~F_GSO;
  if (status == UV_ECANCELED) b->next = b->queued;
  if (b->next < b->queued && !t->closed) {
    /* EAGAIN: the rest waits for POLLOUT, still this buffer's, so nothing overtakes it. */
    st[S_INFLIGHT] = st[S_BLOCKED] = b->bytes - b->meta[SM_STRIDE * b->next];
    t->want_write = 1;
    udp_update_poll(t);
    return err;
  }
  if (b->next < b->queued) st[S_DROPPED] += b->queued - b->next; /* closed while blocked */
  t->sending = -1;
  t->completed++;
  st[S_INFLIGHT] = st[S_BLOCKED] = 0;
  reclaim_keys(t);
  t->want_write = 0;
  udp_update_poll(t);
  if (inline_done) return err; /* the caller submits what JS filled */
  if (st[S_QUEUED] > 0) submit(t, 0); /* also after close: the last datagrams JS queued */
  if (t->closed && !udp_jobs_out(t)) udp_finish_close(t);
  return err;
}

/* udp-link-send.ts's fragment datagram: type ‖ cookie ‖ counter ‖ record kind ‖ length u16 ‖
 * frame id u32 ‖ index u8 ‖ count u8 ‖ offset u16 ‖ fragment ‖ tag. */
#define PKT_DATA 0x10
#define REC_FRAGMENT 2
#define FRAG_HEAD (SEAL_BODY_AT + 3 + 8)

int udp_queue_fragments(sock_t *t, const frag_run_t *f) {
  if (f->count < 2 || f->count > 255 || f->len == 0 || f->len > 65535) return -EINVAL;
  size_t size = (f->len + (size_t)f->count - 1) / (size_t)f->count;
  if ((size_t)(f->count - 1) * size >= f->len) return -EINVAL; /* a fragment would be empty */
  int32_t *st = t->state;
  sendbuf_t *b = &t->sb[st[S_FILL] & 1];
  int32_t q = st[S_QUEUED];
  size_t at = (size_t)st[S_BYTES];
  size_t need = (size_t)f->count * (FRAG_HEAD + SEAL_TAG) + f->len;
  if (q < 0 || (size_t)q + (size_t)f->count > b->entries || at + need > b->len) return -ENOBUFS;
  uint64_t first = ((uint64_t)(f->counter_hi & 0x7fffffffu) << 32) | f->counter_lo;
  uint32_t phase = f->counter_hi & 0x80000000u;
  for (int i = 0; i < f->count; i++) {
    size_t from = (size_t)i * size;
    size_t part = f->len - from < size ? f->len - from : size;
    uint64_t n = first + (uint64_t)i;
    uint32_t hi = (uint32_t)(n >> 32) | phase, lo = (uint32_t)n;
    uint8_t *d = b->buf + at;
    d[0] = PKT_DATA;
    memcpy(d + 1, f->cookie, 8);
    d[9] = (uint8_t)(hi >> 24), d[10] = (uint8_t)(hi >> 16), d[11] = (uint8_t)(hi >> 8), d[12] = (uint8_t)hi;
    d[13] = (uint8_t)(lo >> 24), d[14] = (uint8_t)(lo >> 16), d[15] = (uint8_t)(lo >> 8), d[16] = (uint8_t)lo;
    uint8_t *r = d + SEAL_BODY_AT;
    r[0] = REC_FRAGMENT;
    r[1] = (uint8_t)(part >> 8), r[2] = (uint8_t)part;
    r[3] = (uint8_t)(f->id >> 24), r[4] = (uint8_t)(f->id >> 16), r[5] = (uint8_t)(f->id >> 8), r[6] = (uint8_t)f->id;
    r[7] = (uint8_t)i, r[8] = (uint8_t)f->count;
    r[9] = (uint8_t)(from >> 8), r[10] = (uint8_t)from;
    memcpy(d + FRAG_HEAD, f->frame + from, part);
    int32_t *m = b->meta + SM_STRIDE * (q + i);
    m[0] = (int32_t)at;
    m[1] = (int32_t)(FRAG_HEAD + part + SEAL_TAG);
    m[2] = f->dest;
    m[3] = f->key;
    at += (size_t)m[1];
  }
  st[S_QUEUED] = q + f->count;
  st[S_BYTES] = (int32_t)at;
  return f->count;
}
