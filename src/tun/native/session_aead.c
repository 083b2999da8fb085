/*
 * planetd_session: ChaCha20-Poly1305 (IETF) for end-to-end session traffic between planetd nodes,
 * from the OpenSSL the running Node carries, called synchronously from JS (src/crypto/session-aead.ts).
 * Why not sodium: on the 2-core machines here OpenSSL's EVP ChaCha20-Poly1305 seals 64 KiB at
 * ~3.4 GB/s where sodium's secretbox does ~1.5 and sodium's own chacha20poly1305_ietf ~1.5.
 *
 * available() -> true when built with OpenSSL (PLANETD_NO_OPENSSL or missing headers: false, and
 *   seal/open always fail; JS then never announces the cipher and sessions keep NaCl box).
 * seal(key, nonceHi, nonceLo, buf, adEnd, end) -> bool
 *   AD = buf[0, adEnd); buf[adEnd, end) is encrypted in place and the 16-byte tag written at
 *   buf[end, end + 16). The 12-byte nonce is 4 zero bytes ‖ (nonceHi ‖ nonceLo) as u64 big-endian.
 * open(key, nonceHi, nonceLo, src, adEnd, end, dst, dstOff) -> bool
 *   AD = src[0, adEnd), ciphertext src[adEnd, end - 16), tag src[end - 16, end); the plaintext goes
 *   to dst[dstOff, dstOff + end - 16 - adEnd): dst is either disjoint from the ciphertext or exactly
 *   on it (dst = src, dstOff = adEnd: in place), as OpenSSL wants. On a tag mismatch the bytes written
 *   to dst are garbage and false is returned.
 * use(name) -> bool: "direct" (the default where Node exports ChaCha20_ctr32 and Poly1305_*:
 *   session_chacha.c, no EVP dispatch per packet) or "evp"; false when that one is not available.
 * implementation() -> "direct", "evp" or "none".
 * One EVP context each for sealing and opening per module instance; the key is set only when it
 * differs from the last one used (a key schedule per call cost ~1% at 1.4 kB), so a busy session
 * pays one nonce setup per packet. Nothing is allocated per call.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <node_api.h>

#include "session_chacha.h"

#if !defined(PLANETD_NO_OPENSSL) && defined(__has_include)
#if __has_include(<openssl/evp.h>)
#define PLANETD_HAVE_OPENSSL 1
#include <openssl/evp.h>
#endif
#endif

#define KEY_BYTES 32
#define TAG_BYTES 16
#define NONCE_BYTES 12

typedef struct {
#ifdef PLANETD_HAVE_OPENSSL
  EVP_CIPHER_CTX *ctx;
#endif
  uint8_t key[KEY_BYTES];
  bool key_set;
} aead_ctx_t;

typedef struct {
  aead_ctx_t seal, open;
  direct_aead_t *direct_seal, *direct_open; /* NULL where the process lacks the symbols */
  bool use_direct;
} instance_t;

static bool evp_ready(const instance_t *inst) {
#ifdef PLANETD_HAVE_OPENSSL
  return inst->seal.ctx != NULL && inst->open.ctx != NULL;
#else
  return false;
#endif
}

static bool get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type type;
  void *p = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta) return false;
  if (napi_get_typedarray_info(env, v, &type, len, &p, NULL, NULL) != napi_ok || type != napi_uint8_array)
    return false;
  *data = (uint8_t *)p;
  return true;
}

static bool get_u32(napi_env env, napi_value v, uint32_t *out) {
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

static napi_value bool_result(napi_env env, bool v) {
  napi_value r;
  napi_get_boolean(env, v, &r);
  return r;
}

#ifdef PLANETD_HAVE_OPENSSL
/* Sets key (when it changed) and nonce; ready for AD. */
static bool start(aead_ctx_t *c, const uint8_t *key, uint32_t hi, uint32_t lo, int enc) {
  uint8_t nonce[NONCE_BYTES] = {0};
  nonce[4] = (uint8_t)(hi >> 24), nonce[5] = (uint8_t)(hi >> 16), nonce[6] = (uint8_t)(hi >> 8);
  nonce[7] = (uint8_t)hi, nonce[8] = (uint8_t)(lo >> 24), nonce[9] = (uint8_t)(lo >> 16);
  nonce[10] = (uint8_t)(lo >> 8), nonce[11] = (uint8_t)lo;
  bool same = c->key_set && memcmp(c->key, key, KEY_BYTES) == 0;
  if (!same) c->key_set = false; /* until the init with the new key succeeded */
  if (EVP_CipherInit_ex(c->ctx, NULL, NULL, same ? NULL : key, nonce, enc) != 1) return false;
  if (!same) {
    memcpy(c->key, key, KEY_BYTES);
    c->key_set = true;
  }
  return true;
}

static bool seal(aead_ctx_t *c, const uint8_t *key, uint32_t hi, uint32_t lo, uint8_t *buf, size_t ad,
                 size_t end) {
  int outl = 0;
  if (c->ctx == NULL || !start(c, key, hi, lo, 1)) return false;
  if (ad > 0 && EVP_CipherUpdate(c->ctx, NULL, &outl, buf, (int)ad) != 1) return false;
  if (end > ad && EVP_CipherUpdate(c->ctx, buf + ad, &outl, buf + ad, (int)(end - ad)) != 1) return false;
  if (EVP_CipherFinal_ex(c->ctx, buf + end, &outl) != 1) return false;
  return EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_GET_TAG, TAG_BYTES, buf + end) == 1;
}

static bool open_into(aead_ctx_t *c, const uint8_t *key, uint32_t hi, uint32_t lo, const uint8_t *src,
                      size_t ad, size_t end, uint8_t *dst) {
  int outl = 0;
  size_t body = end - TAG_BYTES - ad;
  uint8_t tag[TAG_BYTES];
  memcpy(tag, src + end - TAG_BYTES, TAG_BYTES); /* dst may overlap it */
  if (c->ctx == NULL || !start(c, key, hi, lo, 0)) return false;
  if (ad > 0 && EVP_CipherUpdate(c->ctx, NULL, &outl, src, (int)ad) != 1) return false;
  if (body > 0 && EVP_CipherUpdate(c->ctx, dst, &outl, src + ad, (int)body) != 1) return false;
  if (EVP_CIPHER_CTX_ctrl(c->ctx, EVP_CTRL_AEAD_SET_TAG, TAG_BYTES, tag) != 1) return false;
  return EVP_CipherFinal_ex(c->ctx, dst + body, &outl) == 1;
}
#endif

static napi_value js_available(napi_env env, napi_callback_info info) {
  instance_t *inst = NULL;
  napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&inst);
  return bool_result(env, inst != NULL && (inst->use_direct || evp_ready(inst)));
}

static napi_value js_implementation(napi_env env, napi_callback_info info) {
  instance_t *inst = NULL;
  napi_value r;
  napi_get_cb_info(env, info, NULL, NULL, NULL, (void **)&inst);
  const char *name = inst->use_direct ? "direct" : evp_ready(inst) ? "evp" : "none";
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &r);
  return r;
}

static napi_value js_use(napi_env env, napi_callback_info info) {
  instance_t *inst = NULL;
  size_t argc = 1, len = 0;
  napi_value arg;
  char name[8] = "";
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, (void **)&inst) != napi_ok || argc < 1 ||
      napi_get_value_string_utf8(env, arg, name, sizeof name, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "session AEAD: use(\"direct\" or \"evp\")");
    return NULL;
  }
  if (strcmp(name, "direct") == 0 && inst->direct_seal && inst->direct_open) {
    inst->use_direct = true;
    return bool_result(env, true);
  }
  if (strcmp(name, "evp") == 0 && evp_ready(inst)) {
    inst->use_direct = false;
    return bool_result(env, true);
  }
  return bool_result(env, false);
}

/* The arguments seal and open share: key, nonceHi, nonceLo, buf, adEnd, end (want: 6 or 8). */
typedef struct {
  napi_value argv[8];
  instance_t *inst;
  uint8_t *key, *buf;
  size_t buf_len;
  uint32_t hi, lo, ad, end;
} call_t;

static bool get_call(napi_env env, napi_callback_info info, size_t want, call_t *c) {
  size_t argc = want, key_len = 0;
  return napi_get_cb_info(env, info, &argc, c->argv, NULL, (void **)&c->inst) == napi_ok && argc >= want &&
         get_bytes(env, c->argv[0], &c->key, &key_len) && key_len == KEY_BYTES && get_u32(env, c->argv[1], &c->hi) &&
         get_u32(env, c->argv[2], &c->lo) && get_bytes(env, c->argv[3], &c->buf, &c->buf_len) &&
         get_u32(env, c->argv[4], &c->ad) && get_u32(env, c->argv[5], &c->end) && c->end <= INT_MAX;
}

static napi_value js_seal(napi_env env, napi_callback_info info) {
  call_t c;
  if (!get_call(env, info, 6, &c) || c.ad > c.end || (size_t)c.end + TAG_BYTES > c.buf_len) {
    napi_throw_type_error(env, NULL,
                          "session AEAD: seal(key of 32 bytes, nonceHi, nonceLo, buf, adEnd, end) with "
                          "adEnd <= end and end + 16 <= buf.length");
    return NULL;
  }
  if (c.inst->use_direct) {
    direct_aead_seal(c.inst->direct_seal, c.key, c.hi, c.lo, c.buf, c.ad, c.end);
    return bool_result(env, true);
  }
#ifdef PLANETD_HAVE_OPENSSL
  return bool_result(env, seal(&c.inst->seal, c.key, c.hi, c.lo, c.buf, c.ad, c.end));
#else
  return bool_result(env, false);
#endif
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  call_t c;
  uint8_t *dst = NULL;
  size_t dst_len = 0;
  uint32_t dst_off = 0;
  if (!get_call(env, info, 8, &c) || !get_bytes(env, c.argv[6], &dst, &dst_len) ||
      !get_u32(env, c.argv[7], &dst_off) || c.end > c.buf_len || (size_t)c.ad + TAG_BYTES > c.end ||
      (size_t)dst_off + (c.end - TAG_BYTES - c.ad) > dst_len) {
    napi_throw_type_error(env, NULL,
                          "session AEAD: open(key of 32 bytes, nonceHi, nonceLo, src, adEnd, end, dst, dstOff) "
                          "with adEnd + 16 <= end <= src.length and room in dst");
    return NULL;
  }
  if (c.inst->use_direct)
    return bool_result(env, direct_aead_open(c.inst->direct_open, c.key, c.hi, c.lo, c.buf, c.ad, c.end,
                                             dst + dst_off));
#ifdef PLANETD_HAVE_OPENSSL
  return bool_result(env, open_into(&c.inst->open, c.key, c.hi, c.lo, c.buf, c.ad, c.end, dst + dst_off));
#else
  return bool_result(env, false);
#endif
}

static void free_instance(napi_env env, void *data, void *hint) {
  instance_t *inst = data;
  direct_aead_free(inst->direct_seal);
  direct_aead_free(inst->direct_open);
#ifdef PLANETD_HAVE_OPENSSL
  if (inst->seal.ctx) EVP_CIPHER_CTX_free(inst->seal.ctx);
  if (inst->open.ctx) EVP_CIPHER_CTX_free(inst->open.ctx);
#endif
  free(inst);
}

#ifdef PLANETD_HAVE_OPENSSL
static EVP_CIPHER_CTX *new_ctx(int enc) {
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  if (c && EVP_CipherInit_ex(c, EVP_chacha20_poly1305(), NULL, NULL, NULL, enc) != 1) {
    EVP_CIPHER_CTX_free(c);
    return NULL;
  }
  return c;
}
#endif

static napi_value Init(napi_env env, napi_value exports) {
  instance_t *inst = calloc(1, sizeof *inst);
  if (inst == NULL) {
    napi_throw_error(env, NULL, "session AEAD: out of memory");
    return NULL;
  }
#ifdef PLANETD_HAVE_OPENSSL
  inst->seal.ctx = new_ctx(1);
  inst->open.ctx = new_ctx(0);
#endif
  inst->direct_seal = direct_aead_new();
  inst->direct_open = direct_aead_new();
  inst->use_direct = inst->direct_seal != NULL && inst->direct_open != NULL;
  if (napi_set_instance_data(env, inst, free_instance, NULL) != napi_ok) {
    free_instance(env, inst, NULL);
    return NULL;
  }
  napi_property_descriptor props[] = {
      {"available", NULL, js_available, NULL, NULL, NULL, napi_default, inst},
      {"seal", NULL, js_seal, NULL, NULL, NULL, napi_default, inst},
      {"open", NULL, js_open, NULL, NULL, NULL, napi_default, inst},
      {"use", NULL, js_use, NULL, NULL, NULL, napi_default, inst},
      {"implementation", NULL, js_implementation, NULL, NULL, NULL, napi_default, inst},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
