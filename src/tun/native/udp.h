/* planetd_udp: the socket state shared by udp_io.c (receive, send, poll) and udp.c (the N-API
 * surface, whose header comment describes the interface). */
#ifndef PLANETD_UDP_H
#define PLANETD_UDP_H
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

/* Sealing in C uses the OpenSSL the running Node carries: its headers ship with NodeSource's and the
 * official builds (include/node/openssl); Debian's Node links the system libcrypto, whose headers
 * come with libssl-dev. Without them the socket still works and JS seals (addKey refuses). */
#if !defined(PLANETD_NO_OPENSSL) && defined(__has_include)
#if __has_include(<openssl/evp.h>)
#define PLANETD_HAVE_OPENSSL 1
#include <openssl/evp.h>
#endif
#endif
#ifndef PLANETD_HAVE_OPENSSL
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX; /* never made */
#endif

#include "session_chacha.h"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define RECV_SLOTS 16
#define RECV_SLOT 65536
/* recvMeta: offset, length, port, address (4 words), scope id, open status (OPEN_*). */
#define RM_STRIDE 9
#define SM_STRIDE 4
#define MAX_DESTS 256
/* The kernel's UDP_MAX_SEGMENTS was 64 before 6.x raised it; a GSO message stays under an IP packet. */
#define GSO_MAX_SEGS 64
#define GSO_MAX_BYTES 65000
#define SEND_MSGS 64
/* Send keys a socket holds (one per link direction and key phase on it); JS seals the rest itself. */
#define KEY_SLOTS 256
#define KEY_BYTES 32
/* udp-seal.ts's layout: type ‖ cookie (the AD, 9 bytes) ‖ counter u64 ‖ ciphertext ‖ tag. */
#define SEAL_AD 9
#define SEAL_BODY_AT 17
#define SEAL_TAG 16
/* Receive keys a socket holds (one per link and key phase on it); JS opens the rest itself. */
#define OPEN_SLOTS 256
/* recvMeta word 8: the receive key slot that opened the datagram in place, or one of these. */
#define OPEN_NONE (-1)   /* not tried: no key registered for its cookie and phase (JS opens it) */
#define OPEN_FAILED (-2) /* the registered key did not open it: forged or corrupted */
/* Or slot | count << OPEN_RUN_SHIFT: count fragment datagrams of one frame joined (udp_recv.c). */
#define OPEN_RUN_SHIFT 8
/* sendMeta word 3: the key slot to seal with, or one of these. */
#define CLOSED_EVENT (-3)
/* onEvent(count, 0, ERR_EVENT): count ICMP errors read from the error queue (udp_err.c), each
 * ERR_STRIDE words: port, address (4 words), scope id, errno. At most ERR_SLOTS a wakeup. */
#define ERR_EVENT (-4)
#define ERR_STRIDE 7
#define ERR_SLOTS 32
#define KEY_NONE (-1)
#define KEY_FAILED (-2)

/* Who reads (udp_recv.c): the loop thread first and a job once a batch fills, always a job, or
 * always the loop thread. */
enum { RECV_ADAPTIVE, RECV_JOB, RECV_INLINE };
/* PLANETD_UDP_SEND_INLINE's default: a flush of up to this many datagrams with no send job out is
 * sealed and sent on the loop thread (udp_send.c). */
#define SEND_INLINE_MAX 4

/* state: shared with JS (udp-native.ts names the same indices). */
enum {
  S_QUEUED, S_BYTES, S_DROPPED, S_ERR_SLOT, S_SENT, S_GSO_MSGS, S_GRO_BUFS, S_RECV_TRUNC, S_FLAGS,
  S_FILL, S_INFLIGHT, S_KEYS_REFUSED, S_SEAL_FAILED, S_BLOCKED,
  S_RBUF, S_OPENED, S_OPEN_FAILED, S_OPEN_KEYS_REFUSED, S_RECV_JOBS,
  /* Where the adaptive paths ran: reads on the loop thread (S_RECV_JOBS: by a job), datagrams they
   * opened, send buffers handed to a job and those sealed and sent on the loop thread. */
  S_RECV_INLINE, S_OPENED_INLINE, S_SEND_JOBS, S_SEND_INLINE,
  /* Frames handed to JS whole: a batch's opened fragment datagrams of one frame, in order (udp_recv.c). */
  S_JOINED, S_COUNT
};
#define F_GRO 1
#define F_GSO 2

typedef union {
  struct sockaddr sa;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} addr_t;

/* One of the two send buffers: JS fills one (state[S_FILL]) while a threadpool job seals and sends
 * the other. */
typedef struct {
  uint8_t *buf;
  size_t len;
  int32_t *meta;
  size_t entries;
  int32_t queued; /* entries handed to the job */
  int32_t bytes;
  int32_t next;   /* first entry not yet sent (EAGAIN leaves the rest for the writable wakeup) */
  /* A GSO message the kernel refused: its datagrams go one by one up to this entry. */
  int32_t nogso_until;
} sendbuf_t;

/* What a job did, applied to state[] on the loop thread when it completes. */
typedef struct {
  int32_t sent, gso_msgs, dropped, seal_failed, err, err_slot, gso_refused;
  int gso; /* F_GSO as it was when the job started */
} job_result_t;

/* What a receive job did, applied on the loop thread when it completes (udp_recv.c). */
typedef struct {
  int32_t entries, opened, open_failed, gro_bufs, trunc, joined;
  int got_all; /* recvmmsg filled every slot: more is likely waiting */
  int err;     /* a receive error the kernel reported after the datagrams read */
} recv_result_t;

typedef struct {
  napi_env env;
  int fd;
  int family;
  uv_poll_t poll;
  int poll_inited, poll_events, closed, poll_closed, finalized;
  napi_ref cb_ref, rbuf_ref[2], rmeta_ref[2], sbuf_ref[2], smeta_ref[2], state_ref;
  napi_async_context actx;
  /* Two receive buffers: a job reads and opens into one while JS consumes the other. */
  uint8_t *rbuf[2];
  size_t rslots;
  int32_t *rmeta[2];
  size_t rmeta_entries;
  int rfill;         /* the buffer the next (or running) receive job fills */
  int rcur;          /* the buffer JS was handed last (sourceText reads its entries) */
  int recv_out;      /* a receive job is queued or running: the fd is not polled for reading */
  int recv_running;  /* under lock: its worker has not finished */
  int rwork_pending; /* its request awaits the completion callback */
  int want_write;    /* a send job waits for POLLOUT */
  int recv_mode;     /* RECV_*: PLANETD_UDP_RECV at open (udp_recv.c) */
  int join_runs;     /* hand whole frames to JS (udp_recv.c); PLANETD_UDP_JOIN=0 at open: never */
  int send_inline_max; /* flushes of at most this many datagrams seal and send here (udp_send.c) */
  int recv_err_after; /* an error POLLERR read, reported after the batch of the job it queued */
  uv_work_t rwork;
  recv_result_t rresult;
  EVP_CIPHER_CTX *open_aead; /* set when this OpenSSL has the cipher: receive keys are taken */
  /* Receive keys: state 0 free, 1 in use (set last, with release order: a job may be running),
   * 2 dropped by JS and freed once no job can be using it. Matched by cookie ‖ phase bit. Each
   * slot's context holds its key schedule (udp_key_ctx), so a datagram sets only its nonce
   * whichever link's key it needs; a freed slot's context is reset (its key wiped). */
  EVP_CIPHER_CTX *open_ctx[OPEN_SLOTS];
  /* The link AEAD without EVP (session_chacha.c: OpenSSL's ChaCha20 and Poly1305 primitives that
   * Node exports), one context a direction, with each slot's key kept beside its EVP context; NULL
   * where the symbols are absent or PLANETD_UDP_AEAD=evp: EVP then (udp_seal_slot, udp_open_slot). */
  direct_aead_t *open_direct, *seal_direct;
  uint8_t open_key[OPEN_SLOTS][KEY_BYTES];
  uint8_t seal_key[KEY_SLOTS][KEY_BYTES];
  uint8_t ocookie[OPEN_SLOTS][8];
  uint8_t ophase[OPEN_SLOTS];
  uint8_t okey_state[OPEN_SLOTS];
  int okey_top; /* slots below this may be in use */
  int olast;    /* the worker's last hit */
  int32_t *state;
  sendbuf_t sb[2];
  /* The buffer a job owns (queued, running, or waiting for POLLOUT), -1 when none. */
  int sending;
  int job_queued;   /* a job's results are not applied yet (by its completion, or inline by a flush that waited) */
  int job_running;  /* under lock: the worker has not finished (the cleanup hook waits for it) */
  int torn_down;    /* the env's cleanup hook ran: nothing more may touch JS */
  int finished;     /* fd closed and references dropped */
  int close_deferred; /* close() came while a job was out */
  /* Two requests: one whose job a waiting flush completed inline may still await its callback. */
  uv_work_t works[2];
  int work_pending[2];
  uv_work_t *current_work;
  int deferred_err; /* a refusal from a job this thread ran, reported by the next flush */
  uv_mutex_t lock;
  uv_cond_t job_idle;
  int lock_inited;
  job_result_t result;
  EVP_CIPHER_CTX *aead; /* set when this OpenSSL has the cipher: send keys are taken */
  /* Key slots: 0 free, 1 in use, 2 dropped by JS and freed once buffer number free_after completed;
   * each with its context keyed once, as the receive slots. */
  EVP_CIPHER_CTX *seal_ctx[KEY_SLOTS];
  uint8_t key_state[KEY_SLOTS];
  uint32_t key_free_after[KEY_SLOTS];
  uint32_t submitted, completed;
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
  /* ICMP errors as liveness hints (udp_err.c): IP(V6)_RECVERR on, connect() done, and the hint
   * entries JS registered (errorHints; ERR_STRIDE words each) with their sources. */
  int recverr, connected;
  napi_ref err_ref;
  int32_t *err_meta;
  size_t err_entries;
  addr_t err_src[ERR_SLOTS];
} sock_t;


/* Polls the fd for what is wanted now: readable unless a receive job is out, writable while a send
 * job waits for POLLOUT (t->want_write). */
void udp_update_poll(sock_t *t);
void udp_on_poll(uv_poll_t *h, int status, int events);
/* Hands the filled buffer to a threadpool job when none is out (udp_send.c). With wait, a job
 * out is waited for and completed first (JS's buffer is full): 0, or the errno of a datagram it
 * refused (its destination slot in state[S_ERR_SLOT]), which JS reports. */
int udp_flush(sock_t *t, int wait);
/* The writable wakeup: the job's buffer EAGAIN left goes out again. */
void udp_resume(sock_t *t);
/* Registers a 32-byte send key: its slot, or -1 (counted) when all KEY_SLOTS are taken. */
int udp_add_key(sock_t *t, const uint8_t *key);
/* JS seals nothing more with it; the slot is reused once the datagrams queued under it have left. */
void udp_drop_key(sock_t *t, int slot);
/* udp_send.c: seals (enc 1) or opens (enc 0) one datagram in place with c's key; 1 if done. */
int udp_aead(EVP_CIPHER_CTX *c, uint8_t *d, size_t len, int enc);
/* udp_send.c: seals or opens d in place with send key `slot` or receive key `slot`, direct where
 * t has it, else with the slot's EVP context; 1 if done. */
int udp_seal_slot(sock_t *t, int slot, uint8_t *d, size_t len);
int udp_open_slot(sock_t *t, int slot, uint8_t *d, size_t len);
/* Forgets a kept raw key. */
void udp_wipe_raw_key(uint8_t *key);
/* udp_send.c: *c (made if NULL) keyed with a 32-byte key for sealing (enc 1) or opening; 1 if done.
 * udp_key_wipe: forgets the key (the context stays for the slot's next key). */
int udp_key_ctx(EVP_CIPHER_CTX **c, const uint8_t *key, int enc);
void udp_key_wipe(EVP_CIPHER_CTX *c);
void udp_ctx_free(EVP_CIPHER_CTX *c);
/* A traffic frame's fragments as udp-link-send.ts would build them, each its own datagram. */
typedef struct {
  const uint8_t *frame;
  size_t len;
  int count;                       /* fragments, 2..255: equal sizes, the last may be shorter */
  uint32_t id;                     /* the frame id the fragment headers carry */
  const uint8_t *cookie;           /* the peer's 8-byte cookie */
  uint32_t counter_hi, counter_lo; /* the first fragment's counter words (phase bit included) */
  int32_t dest, key;               /* destination slot (-1: connected) and key slot, as sendMeta */
} frag_run_t;
/* udp_send.c: appends f's datagrams to the buffer JS fills (one entry each, counters f's first and
 * on, sealed by the job under f->key): f->count, -ENOBUFS when the buffer has no room for all (none
 * queued), -EINVAL for a run udp-link-send.ts never makes. */
int udp_queue_fragments(sock_t *t, const frag_run_t *f);
/* Waits for a running job's worker to finish (a flush whose buffer is full, env teardown). */
void udp_wait_job(sock_t *t);
/* udp_recv.c: the readable wakeup hands the next receive buffer to a threadpool job; with err, that
 * error (read from SO_ERROR) is reported after the job's datagrams. */
void udp_recv_start(sock_t *t, int err);
/* Env teardown: cancels or waits for a receive job. */
void udp_recv_wait(sock_t *t);
/* Registers a receive key for datagrams carrying cookie (8 bytes) and phase (0/1): slot or -1. */
int udp_add_open_key(sock_t *t, const uint8_t *cookie, int phase, const uint8_t *key);
void udp_drop_open_key(sock_t *t, int slot);
/* udp.c: whether t may be freed now (handle finalized, fd closed, no callback pending), and free it. */
int udp_can_free(sock_t *t);
void udp_free(sock_t *t);
/* udp.c: the deferred part of close, once no job owns the fd. */
void udp_finish_close(sock_t *t);
/* udp.c: close() came while a job was out; the last one to complete finishes it. */
int udp_jobs_out(sock_t *t);
/* udp_io.c: calls onEvent(count, err, slot). */
void udp_emit(sock_t *t, int count, int err, int slot);
/* Address text (with an optional %zone) and port into a sockaddr of family 4 or 6; 0 or an errno. */
int udp_parse_addr(int family, const char *text, int port, addr_t *out, socklen_t *len);
/* udp.c: an address as Node writes it (with %zone), as a JS string. */
napi_value udp_addr_text(napi_env env, const addr_t *a);
/* udp_err.c: ICMP errors as hints. udp_err_init turns IP(V6)_RECVERR on at open (unless
 * PLANETD_UDP_RECVERR=0). udp_err_drain reads the error queue into the hint entries and hands them
 * to JS: the entries read (0 when off); *refused: ECONNREFUSED a connected socket must report. udp_err_reported: the socket error (sk_err) a receive or
 * POLLERR saw, or 0 when it is an ICMP error's echo JS must not see (unconnected: only the hints
 * speak). udp_err_stale: a send refused with e consumed such an echo and goes again. */
void udp_err_init(sock_t *t);
int udp_err_drain(sock_t *t, int *refused);
int udp_err_reported(const sock_t *t, int err);
int udp_err_stale(const sock_t *t, int e);
napi_value udp_err_hints(napi_env env, napi_callback_info info);
sock_t *udp_sock_arg(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
napi_value udp_err_source_text(napi_env env, napi_callback_info info);

#endif
