/* ChaCha20-Poly1305 (RFC 8439) from the ChaCha20 and Poly1305 primitives the running Node's OpenSSL
 * exports, without EVP (session_chacha.c). */
#ifndef PLANETD_SESSION_CHACHA_H
#define PLANETD_SESSION_CHACHA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct direct_aead direct_aead_t;

/* A context for one direction (seal or open); NULL when the process has no such symbols. */
direct_aead_t *direct_aead_new(void);
void direct_aead_free(direct_aead_t *c);

/* As session_aead.c's seal: AD buf[0, ad), buf[ad, end) encrypted in place, tag at buf[end, end + 16). */
void direct_aead_seal(direct_aead_t *c, const uint8_t key[32], uint32_t hi, uint32_t lo, uint8_t *buf,
                      size_t ad, size_t end);

/* As session_aead.c's open, but dst is written only once the tag verified (false: dst untouched). */
bool direct_aead_open(direct_aead_t *c, const uint8_t key[32], uint32_t hi, uint32_t lo, const uint8_t *src,
                      size_t ad, size_t end, uint8_t *dst);

#endif
