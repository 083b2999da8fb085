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


/* Starts or changes what the fd is polled for (UV_READABLE, plus UV_WRITABLE while sends wait). */
void udp_set_poll(sock_t *t, int events);
void udp_on_poll(uv_poll_t *h, int status, int events);
/* Sends the queue: 0, or the errno of the first datagram refused for good (its slot in state[S_ERR_SLOT]). */
int udp_flush(sock_t *t);
/* Address text (with an optional %zone) and port into a sockaddr of family 4 or 6; 0 or an errno. */
int udp_parse_addr(int family, const char *text, int port, addr_t *out, socklen_t *len);

#endif
