/*
 * ChaCha20-Poly1305 (RFC 8439 section 2.8) for session traffic, built on OpenSSL's ChaCha20_ctr32 and
 * Poly1305_Init/Update/Final, which Node's binary exports (the same assembly EVP ends up in), found
 * with dlsym when the addon loads. Why not EVP (session_aead.c keeps it as the fallback): per small
 * packet EVP's provider dispatch costs more than the cipher. Every call re-enters EVP_CipherInit_ex,
 * and the tag goes through EVP_CIPHER_CTX_ctrl, which builds an OSSL_PARAM list that the provider
 * walks with strcmp (perf on an idle daemon showed __strcmp_evex and OSSL_PARAM_locate on the data
 * path). bench/session-aead-call.mjs measures the two per call, warm and with cold caches.
 *
 * The nonce is 4 zero bytes || hi || lo (big-endian), as in session_aead.c. Block 0 of the key stream
 * gives the one-time Poly1305 key, blocks 1... encrypt; the MAC covers AD, zero pad to 16,
 * ciphertext, zero pad, and both lengths as little-endian u64.
 *
 * The symbols are OpenSSL internals, so they are used only once RFC 8439's own example came out
 * right through them (known_answer, at the first load).
 */
#ifndef _GNU_SOURCE /* planetd_udp's target defines it */
#define _GNU_SOURCE
#endif
#include "session_chacha.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TAG_BYTES 16

/* OpenSSL's internal prototypes (crypto/chacha.h, crypto/poly1305.h), stable since 1.1.0. */
typedef void (*chacha_ctr32_fn)(unsigned char *out, const unsigned char *in, size_t len,
                                const unsigned int key[8], const unsigned int counter[4]);
typedef size_t (*poly_ctx_size_fn)(void);
typedef void (*poly_init_fn)(void *ctx, const unsigned char key[32]);
typedef void (*poly_update_fn)(void *ctx, const unsigned char *in, size_t len);
typedef void (*poly_final_fn)(void *ctx, unsigned char mac[16]);

static struct {
  chacha_ctr32_fn chacha;
  poly_init_fn init;
  poly_update_fn update;
  poly_final_fn final;
  size_t ctx_bytes;
  bool found;
} sym;

struct direct_aead {
  /* Poly1305's state, Poly1305_ctx_size() bytes; its alignment is that of its doubles and u64s. */
  void *poly;
};

static bool known_answer(void);

/* Once per process (pthread_once: each worker thread's env loads the addon, and a second thread
 * must not see `found` before ctx_bytes is set). */
static void resolve_once(void) {
  sym.chacha = (chacha_ctr32_fn)dlsym(RTLD_DEFAULT, "ChaCha20_ctr32");
  poly_ctx_size_fn size = (poly_ctx_size_fn)dlsym(RTLD_DEFAULT, "Poly1305_ctx_size");
  sym.init = (poly_init_fn)dlsym(RTLD_DEFAULT, "Poly1305_Init");
  sym.update = (poly_update_fn)dlsym(RTLD_DEFAULT, "Poly1305_Update");
  sym.final = (poly_final_fn)dlsym(RTLD_DEFAULT, "Poly1305_Final");
  sym.found = sym.chacha && size && sym.init && sym.update && sym.final;
  if (sym.found) sym.ctx_bytes = size();
  sym.found = sym.found && sym.ctx_bytes > 0 && sym.ctx_bytes < 4096 && known_answer();
}

static bool resolve(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, resolve_once);
  return sym.found;
}

direct_aead_t *direct_aead_new(void) {
  if (!resolve()) return NULL;
  direct_aead_t *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  if (posix_memalign(&c->poly, 64, sym.ctx_bytes) != 0) {
    free(c);
    return NULL;
  }
  return c;
}

void direct_aead_free(direct_aead_t *c) {
  if (c == NULL) return;
  free(c->poly);
  free(c);
}

static uint32_t load_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t swap32(uint32_t v) {
  return v >> 24 | (v >> 8 & 0xff00) | (v << 8 & 0xff0000) | v << 24;
}

static void store_le64(uint8_t *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Key words and the counter block (block 0) for the nonce n0 || hi || lo (n0: its first 4 bytes as
 * ChaCha's little-endian word; 0 for session traffic); returns the Poly1305 key. */
static void start(const uint8_t key[32], uint32_t n0, uint32_t hi, uint32_t lo, unsigned int words[8],
                  unsigned int counter[4], uint8_t poly_key[64]) {
  for (int i = 0; i < 8; i++) words[i] = load_le32(key + 4 * i);
  /* The nonce bytes are big-endian hi and lo; ChaCha reads them as little-endian words. */
  counter[0] = 0, counter[1] = n0, counter[2] = swap32(hi), counter[3] = swap32(lo);
  memset(poly_key, 0, 64);
  sym.chacha(poly_key, poly_key, 64, words, counter);
  counter[0] = 1;
}

static const uint8_t zeros[16];

static void mac(direct_aead_t *c, const uint8_t poly_key[32], const uint8_t *ad, size_t ad_len,
                const uint8_t *ct, size_t ct_len, uint8_t tag[TAG_BYTES]) {
  uint8_t lengths[16];
  sym.init(c->poly, poly_key);
  if (ad_len > 0) sym.update(c->poly, ad, ad_len);
  if (ad_len % 16) sym.update(c->poly, zeros, 16 - ad_len % 16);
  if (ct_len > 0) sym.update(c->poly, ct, ct_len);
  if (ct_len % 16) sym.update(c->poly, zeros, 16 - ct_len % 16);
  store_le64(lengths, ad_len);
  store_le64(lengths + 8, ct_len);
  sym.update(c->poly, lengths, sizeof lengths);
  sym.final(c->poly, tag);
}

/* The key's words and the one-time Poly1305 key leave no copy on the stack (the caller's frame is
 * reused by whatever runs next, a JS frame or a libuv callback). */
static void wipe(unsigned int words[8], uint8_t poly_key[64]) {
  explicit_bzero(words, 8 * sizeof *words);
  explicit_bzero(poly_key, 64);
}

static void seal_n0(direct_aead_t *c, const uint8_t key[32], uint32_t n0, uint32_t hi, uint32_t lo,
                    uint8_t *buf, size_t ad, size_t end) {
  unsigned int words[8], counter[4];
  uint8_t poly_key[64];
  start(key, n0, hi, lo, words, counter, poly_key);
  if (end > ad) sym.chacha(buf + ad, buf + ad, end - ad, words, counter);
  mac(c, poly_key, buf, ad, buf + ad, end - ad, buf + end);
  wipe(words, poly_key);
}

static bool open_n0(direct_aead_t *c, const uint8_t key[32], uint32_t n0, uint32_t hi, uint32_t lo,
                    const uint8_t *src, size_t ad, size_t end, uint8_t *dst) {
  unsigned int words[8], counter[4];
  uint8_t poly_key[64], tag[TAG_BYTES];
  size_t body = end - TAG_BYTES - ad;
  start(key, n0, hi, lo, words, counter, poly_key);
  mac(c, poly_key, src, ad, src + ad, body, tag);
  /* Constant time: how many tag bytes match must not show in the time taken. */
  uint8_t diff = 0;
  for (int i = 0; i < TAG_BYTES; i++) diff |= tag[i] ^ src[end - TAG_BYTES + i];
  if (diff == 0 && body > 0) sym.chacha(dst, src + ad, body, words, counter);
  wipe(words, poly_key);
  return diff == 0;
}

void direct_aead_seal(direct_aead_t *c, const uint8_t key[32], uint32_t hi, uint32_t lo, uint8_t *buf,
                      size_t ad, size_t end) {
  seal_n0(c, key, 0, hi, lo, buf, ad, end);
}

bool direct_aead_open(direct_aead_t *c, const uint8_t key[32], uint32_t hi, uint32_t lo, const uint8_t *src,
                      size_t ad, size_t end, uint8_t *dst) {
  return open_n0(c, key, 0, hi, lo, src, ad, end, dst);
}

/*
 * RFC 8439 section 2.8.2's example, run once when the symbols are found. They are OpenSSL internals
 * (crypto/chacha.h, crypto/poly1305.h), not its API: a Node whose OpenSSL changed what they take
 * (the counter block's layout, the key's form) would otherwise seal garbage that no peer opens, or
 * worse, without a word. A mismatch leaves direct unavailable and EVP in use. (A prototype changed
 * beyond recognition could crash here rather than fail; none has since 1.1.0.)
 * Nonce 07 00 00 00 40 41 42 43 44 45 46 47, key 80..9f, AD 50 51 52 53 c0..c7.
 */
static const char kat_plain[] = "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for "
                                "the future, sunscreen would be it.";
#define KAT_AD 12
#define KAT_BODY (sizeof kat_plain - 1)
static const uint8_t kat_ad[KAT_AD] = {0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7};
static const uint8_t kat_cipher_head[16] = {0xd3, 0x1a, 0x8d, 0x34, 0x64, 0x8e, 0x60, 0xdb,
                                            0x7b, 0x86, 0xaf, 0xbc, 0x53, 0xef, 0x7e, 0xc2};
static const uint8_t kat_tag[TAG_BYTES] = {0x1a, 0xe1, 0x0b, 0x59, 0x4f, 0x09, 0xe2, 0x6a,
                                           0x7e, 0x90, 0x2e, 0xcb, 0xd0, 0x60, 0x06, 0x91};

static bool known_answer(void) {
  direct_aead_t c;
  if (posix_memalign(&c.poly, 64, sym.ctx_bytes) != 0) return false;
  uint8_t key[32], buf[KAT_AD + KAT_BODY + TAG_BYTES], plain[KAT_BODY];
  const size_t end = KAT_AD + KAT_BODY;
  const uint32_t n0 = 7, hi = 0x40414243, lo = 0x44454647;
  for (int i = 0; i < 32; i++) key[i] = (uint8_t)(0x80 + i);
  memcpy(buf, kat_ad, KAT_AD);
  memcpy(buf + KAT_AD, kat_plain, KAT_BODY);
  seal_n0(&c, key, n0, hi, lo, buf, KAT_AD, end);
  bool ok = memcmp(buf + KAT_AD, kat_cipher_head, sizeof kat_cipher_head) == 0 &&
            memcmp(buf + end, kat_tag, TAG_BYTES) == 0 &&
            open_n0(&c, key, n0, hi, lo, buf, KAT_AD, end + TAG_BYTES, plain) &&
            memcmp(plain, kat_plain, KAT_BODY) == 0;
  buf[end] ^= 1; /* a flipped tag bit must not open */
  ok = ok && !open_n0(&c, key, n0, hi, lo, buf, KAT_AD, end + TAG_BYTES, plain);
  free(c.poly);
  return ok;
}
