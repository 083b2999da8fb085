// session_chacha.c takes ChaCha20_ctr32 and Poly1305_* from the process by name: OpenSSL internals,
// not its API. It must use them only when RFC 8439's example comes out right through them, so a
// Node whose OpenSSL changed what they do gets EVP instead of garbage on the wire. Node's own
// symbols pass (test/session-aead.test.ts: direct is the default here); this builds session_chacha.c
// into a small program that exports look-alikes which do something else, and checks it refuses
// them. Needs a C compiler (node-gyp's); skipped without one.
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const cc = process.env.CC ?? "cc";
const haveCc = spawnSync(cc, ["--version"]).status === 0;
const dir = mkdtempSync(join(tmpdir(), "pd-h4-chacha-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The program: are the look-alikes visible to dlsym, and does direct_aead_new() take them? */
const MAIN = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include "session_chacha.h"
int main(void) {
  direct_aead_t *c = direct_aead_new();
  printf("%s %s\\n", dlsym(RTLD_DEFAULT, "ChaCha20_ctr32") ? "found" : "missing", c != NULL ? "direct" : "refused");
  direct_aead_free(c);
  return 0;
}
`;

/**
 * Look-alikes under OpenSSL's names. keystream: what ChaCha20_ctr32 XORs in, as C statements over
 * (out, in, len, key, counter). The Poly1305 ones are a plain XOR-fold, so only the cipher differs
 * between cases where it matters.
 */
const fakes = (keystream: string) => `
#include <stddef.h>
#include <string.h>
void ChaCha20_ctr32(unsigned char *out, const unsigned char *in, size_t len, const unsigned int key[8],
                    const unsigned int counter[4]) {
  for (size_t i = 0; i < len; i++) { ${keystream} }
}
typedef struct { unsigned char acc[16]; size_t n; } poly;
size_t Poly1305_ctx_size(void) { return sizeof(poly); }
void Poly1305_Init(void *ctx, const unsigned char key[32]) { memset(ctx, 0, sizeof(poly)); }
void Poly1305_Update(void *ctx, const unsigned char *in, size_t len) {
  poly *p = ctx;
  for (size_t i = 0; i < len; i++) p->acc[p->n++ % 16] ^= in[i];
}
void Poly1305_Final(void *ctx, unsigned char mac[16]) { memcpy(mac, ((poly *)ctx)->acc, 16); }
`;

/** Builds the program with these look-alikes exported (-rdynamic: dlsym finds them) and runs it. */
function verdict(name: string, keystream: string): string {
  writeFileSync(join(dir, "main.c"), MAIN);
  writeFileSync(join(dir, `${name}.c`), fakes(keystream));
  const exe = join(dir, name);
  const src = join(process.cwd(), "src/tun/native");
  const built = spawnSync(
    cc,
    [
      "-O1",
      "-rdynamic",
      `-I${src}`,
      "-o",
      exe,
      join(dir, "main.c"),
      join(dir, `${name}.c`),
      join(src, "session_chacha.c"),
      "-ldl",
      "-lpthread",
    ],
    { encoding: "utf8" },
  );
  expect(built.status, built.stderr).toBe(0);
  const ran = spawnSync(exe, [], { encoding: "utf8" });
  expect(ran.status, ran.stderr).toBe(0);
  return ran.stdout.trim();
}

describe.skipIf(!haveCc)("the direct AEAD's known-answer check at load", () => {
  it("refuses look-alikes that compute something else: EVP stays in use", () => {
    expect(verdict("identity", "out[i] = in[i];")).toBe("found refused");
    expect(verdict("keyed", "out[i] = in[i] ^ (unsigned char)(key[i % 8] + counter[0] + i / 64);")).toBe(
      "found refused",
    );
  });
});
