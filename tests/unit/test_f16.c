/* test_f16.c: FP16 input, the CPU side.
 * 1. vit_f32_to_f16 / vit_f16_to_f32 (engine/util.c): all 65536 halves round-trip exactly (NaNs
 *    stay NaN: quiet ones exactly, signalling ones quieted); every midpoint between consecutive halves rounds to the even one, its float
 *    neighbours to the nearer one (subnormals and the 65504 -> inf step included); overflow,
 *    inf, NaN, signed zeros; agreement with numpy's astype(float16) on the committed fixture
 *    tests/fixtures/f16/f32_to_f16.bin (tests/tools/gen_f16_fixture.py) and with the compiler's
 *    _Float16 conversions (libgcc) on a spread of 2^32/4093 float patterns; the F16C fast path
 *    (where the host has it) == the portable reference on all halves and those floats, NaNs too.
 * 2. vit_forward_f16 on a CPU session (fixture model tiny-hf): logits, features, CLS attention
 *    and rollout bit-identical (memcmp) to vit_forward on the same input rounded through FP16;
 *    argument errors; vit_session_input_type. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"
#include "vit.h"

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bitsf(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint16_t to16(float f) { uint16_t h; vit_f32_to_f16(&f, &h, 1); return h; }
static float to32(uint16_t h) { float f; vit_f16_to_f32(&h, &f, 1); return f; }
static int h_isnan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu); }

static void test_roundtrip(void) {
    int bad = 0, nan_bad = 0, nans = 0;
    static uint16_t all[65536], back[65536];
    static float f[65536];
    for (uint32_t h = 0; h < 65536; h++) all[h] = (uint16_t)h;
    vit_f16_to_f32(all, f, 65536);
    vit_f32_to_f16(f, back, 65536);
    for (uint32_t h = 0; h < 65536; h++) {
        if (h_isnan((uint16_t)h)) {   /* quiet NaNs exactly; signalling ones come back quieted */
            nans++;
            if (!isnan(f[h]) || back[h] != (h | 0x200u) || !(fbits(f[h]) & 0x400000u)) nan_bad++;
        } else if (back[h] != h) {
            bad++;
        }
    }
    CHECK(bad == 0, "all 63490 non-NaN halves: f16 -> f32 -> f16 exact (%d differ)", bad);
    CHECK(nans == 2046 && nan_bad == 0,
          "the %d NaN halves stay NaN both ways, quiet, payload kept (%d not)", nans, nan_bad);
    /* values against the definition */
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
        double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(1024 + m, e - 25);
        if (s) v = -v;
        if (isnan(v) ? !isnan(f[h]) : (double)f[h] != v || !!signbit(f[h]) != s) bad++;
    }
    CHECK(bad == 0, "f16 -> f32 values exact, subnormals and signs included (%d wrong)", bad);
}

/* every pair of consecutive halves (both signs, 0 .. 65504, then 65504 .. the "next" 65536 = inf):
 * the midpoint goes to the even neighbour, the floats just inside it to the nearer one */
static void test_ties(void) {
    int bad = 0, checked = 0;
    for (int sgn = 0; sgn < 2; sgn++)
        for (uint32_t h = 0; h < 0x7c00; h++) {
            uint16_t lo = (uint16_t)(h | (sgn << 15)), hi = (uint16_t)((h + 1) | (sgn << 15));
            double a = to32(lo), b = h + 1 == 0x7c00 ? (sgn ? -65536.0 : 65536.0) : to32(hi);
            float mid = (float)((a + b) / 2);   /* exact: 12 significant bits */
            if ((double)mid != (a + b) / 2) { bad++; continue; }
            uint16_t even = (h & 1) ? hi : lo;
            float toward_lo = nextafterf(mid, (float)a), toward_hi = nextafterf(mid, (float)b);
            if (to16(mid) != even || to16(toward_lo) != lo || to16(toward_hi) != hi) {
                if (bad < 5)
                    printf("# tie %04x|%04x: mid %a -> %04x (want %04x), below %04x, above %04x\n", lo,
                           hi, mid, to16(mid), even, to16(toward_lo), to16(toward_hi));
                bad++;
            }
            checked++;
        }
    CHECK(bad == 0 && checked == 2 * 0x7c00,
          "ties to even at all %d midpoints, neighbours to the nearer half (%d wrong)", checked, bad);
}

static void test_specials(void) {
    CHECK(to16(65520.0f) == 0x7c00 && to16(-65520.0f) == 0xfc00 &&
              to16(nextafterf(65520.0f, 0.f)) == 0x7bff && to16(65504.0f) == 0x7bff &&
              to16(65536.0f) == 0x7c00 && to16(1e20f) == 0x7c00 && to16(FLT_MAX) == 0x7c00 &&
              to16(-FLT_MAX) == 0xfc00,
          "overflow: >= 65520 -> inf, 65519.996 -> 65504");
    CHECK(to16(INFINITY) == 0x7c00 && to16(-INFINITY) == 0xfc00 && isinf(to32(0x7c00)) &&
              to32(0xfc00) < 0,
          "inf <-> inf, signs kept");
    CHECK(to16(0.f) == 0 && to16(-0.f) == 0x8000 && signbit(to32(0x8000)), "signed zeros");
    CHECK(to16(0x1p-24f) == 0x0001 && to16(0x1p-25f) == 0x0000 && to16(-0x1p-25f) == 0x8000 &&
              to16(nextafterf(0x1p-25f, 1.f)) == 0x0001 && to16(0x3p-25f) == 0x0002 &&
              to16(0x5p-25f) == 0x0002 && to16(FLT_TRUE_MIN) == 0 && to16(-0x1p-24f) == 0x8001 &&
              to16(0x1p-14f) == 0x0400 && to16(nextafterf(0x1p-14f, 0.f)) == 0x0400 &&
              to16(0x3ffp-24f) == 0x03ff,
          "subnormals: 2^-24 -> 1, 2^-25 tie -> 0, 3*2^-25 -> 2, 5*2^-25 -> 2, just below 2^-14 -> 2^-14");
    const uint32_t nanbits[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7f801fffu, 0xff802000u,
                                0x7fffffffu, 0x7fa00000u};
    int bad = 0;
    for (size_t i = 0; i < sizeof nanbits / sizeof nanbits[0]; i++) {
        uint16_t h = to16(bitsf(nanbits[i]));
        if (!h_isnan(h) || !(h & 0x200u) || (h >> 15) != (nanbits[i] >> 31) ||
            (h & 0x1ffu) != ((nanbits[i] >> 13) & 0x1ffu))
            bad++;
    }
    CHECK(bad == 0, "f32 NaNs (quiet, signalling, payload only in the low bits) -> quiet NaN halves, sign and top payload kept");
}

static void test_numpy_fixture(void) {
    const char *path = "tests/fixtures/f16/f32_to_f16.bin";
    uint8_t *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    if (vit_read_file(path, 1 << 20, &buf, &len, err, sizeof err) != VIT_OK) {
        CHECK(0, "read %s: %s", path, err);
        return;
    }
    uint32_t n = 0;
    if (len >= 4) memcpy(&n, buf, 4);
    if (len != 4 + (size_t)n * 6 || n < 1000) {
        CHECK(0, "%s: %zu bytes for %u values", path, len, n);
        free(buf);
        return;
    }
    int bad = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t b;
        uint16_t want;
        memcpy(&b, buf + 4 + (size_t)i * 4, 4);
        memcpy(&want, buf + 4 + (size_t)n * 4 + (size_t)i * 2, 2);
        uint16_t got = to16(bitsf(b));
        if (got != want) {
            if (bad < 5) printf("# numpy: %08x (%a) -> %04x, ours %04x\n", b, bitsf(b), want, got);
            bad++;
        }
    }
    CHECK(bad == 0, "f32 -> f16 == numpy astype(float16) on %u fixture values (%d differ)", n, bad);
    free(buf);
}

static void test_compiler_f16(void) {
#ifdef __FLT16_MAX__
    int bad = 0, n = 0;
    for (uint64_t u = 0; u < (1ull << 32); u += 4093) {   /* a prime stride: every exponent */
        float f = bitsf((uint32_t)u);
        if (isnan(f)) continue;
        _Float16 r = (_Float16)f;
        uint16_t want;
        memcpy(&want, &r, 2);
        if (to16(f) != want) bad++;
        n++;
    }
    CHECK(bad == 0, "f32 -> f16 == _Float16 cast on %d float patterns (%d differ)", n, bad);
    bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint16_t hh = (uint16_t)h;
        _Float16 r;
        memcpy(&r, &hh, 2);
        float want = (float)r, got = to32(hh);
        if (!(isnan(want) && isnan(got)) && fbits(want) != fbits(got)) bad++;
    }
    CHECK(bad == 0, "f16 -> f32 == _Float16 widening for all 65536 halves (%d differ)", bad);
#else
    SKIP("compiler has no _Float16");
#endif
}

/* the public functions (F16C where the host has it) against the portable reference, bit for bit,
 * NaNs included, and at every length 0..40 (the vector loop's tail) */
static void test_fast_path(void) {
    static uint16_t all[65536];
    static float fa[65536], fb[65536];
    for (uint32_t h = 0; h < 65536; h++) all[h] = (uint16_t)h;
    vit_f16_to_f32(all, fa, 65536);
    vit_f16_to_f32_portable(all, fb, 65536);
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) bad += fbits(fa[h]) != fbits(fb[h]);
    CHECK(bad == 0, "f16 -> f32: %s == portable on all 65536 halves, bits (%d differ)",
          vit_f16c_available() ? "F16C" : "portable", bad);
    enum { N = 1 << 20 };
    float *x = malloc(sizeof(float) * N);
    uint16_t *ya = malloc(2 * N), *yb = malloc(2 * N);
    uint64_t u = 0;
    for (int i = 0; i < N; i++, u += 4093) x[i] = bitsf((uint32_t)u);   /* NaNs included */
    vit_f32_to_f16(x, ya, N);
    vit_f32_to_f16_portable(x, yb, N);
    bad = 0;
    for (int i = 0; i < N; i++) bad += ya[i] != yb[i];
    for (int n = 0; n <= 40; n++) {
        memset(ya, 0, 2 * 48); memset(yb, 0, 2 * 48);
        vit_f32_to_f16(x + 3, ya + 1, (size_t)n);
        vit_f32_to_f16_portable(x + 3, yb + 1, (size_t)n);
        bad += memcmp(ya, yb, 2 * 48) != 0;
    }
    CHECK(bad == 0, "f32 -> f16: %s == portable on %d float patterns (NaNs too) and lengths 0..40 (%d differ)",
          vit_f16c_available() ? "F16C" : "portable", N, bad);
    free(x); free(ya); free(yb);
}

static void test_arrays(void) {
    float x[37];
    uint16_t y[40];
    float z[40];
    for (int i = 0; i < 37; i++) x[i] = (float)(i - 18) * 0.37f;
    memset(y, 0xab, sizeof y);
    vit_f32_to_f16(x, y + 1, 0);
    vit_f32_to_f16(x, y + 1, 37);                  /* odd length, odd address */
    vit_f16_to_f32(y + 1, z + 3, 37);
    int bad = 0;
    for (int i = 0; i < 37; i++) if (y[1 + i] != to16(x[i]) || fbits(z[3 + i]) != fbits(to32(to16(x[i])))) bad++;
    CHECK(bad == 0 && y[0] == 0xabab && y[38] == 0xabab, "arrays: any length and alignment, nothing written past n");
}

/* ---- vit_forward_f16 on the CPU ---------------------------------------------------------- */

static void test_cpu_forward(void) {
    const char *dir = "tests/fixtures/models/tiny-hf";
    char err[256] = "", path[512];
    vit_model *m = NULL;
    vit_status st = vit_model_load(dir, NULL, &m, err, sizeof err);
    CHECK(st == VIT_OK, "load %s (%s)", dir, st ? err : "ok");
    if (st) return;
    const vit_config *c = vit_model_config(m);
    snprintf(path, sizeof path, "%s/ref/input.npy", dir);
    float *x = NULL;
    int64_t shape[8];
    int nd = 0;
    st = vit_npy_read(path, &x, shape, &nd, err, sizeof err);
    CHECK(st == VIT_OK && nd == 4, "read %s (%s)", path, st ? err : "ok");
    if (st) { vit_model_free(m); return; }
    const int B = (int)shape[0], C = c->num_classes, F = c->feature_dim, NP = c->num_patches;
    const size_t n = (size_t)B * c->num_channels * c->image_size * c->image_size;
    uint16_t *h = malloc(n * 2);
    float *xr = malloc(n * 4);
    vit_f32_to_f16(x, h, n);
    vit_f16_to_f32(h, xr, n);
    size_t changed = 0;
    for (size_t i = 0; i < n; i++) changed += fbits(xr[i]) != fbits(x[i]);
    CHECK(changed > n / 2, "the fixture input changes when rounded to fp16 (%zu of %zu values)", changed, n);

    vit_session_opts so = {.max_batch = B + 1, .threads = 2, .device = VIT_DEVICE_CPU};
    vit_session *s = NULL;
    st = vit_session_new(m, &so, &s, err, sizeof err);
    CHECK(st == VIT_OK, "cpu session (%s)", st ? err : "ok");
    if (st) goto out;
    CHECK(vit_session_input_type(s) == VIT_INPUT_F32 && vit_session_input_type(NULL) == VIT_INPUT_F32,
          "vit_session_input_type: F32 on the CPU");

    float *o32[4], *o16[4];
    size_t sz[4] = {(size_t)B * C, (size_t)B * F, (size_t)B * NP, (size_t)B * NP};
    for (int i = 0; i < 4; i++) { o32[i] = calloc(sz[i], 4); o16[i] = malloc(sz[i] * 4); memset(o16[i], 0xff, sz[i] * 4); }
    vit_outputs a = {o32[0], o32[1], o32[2], NULL}, b = {o16[0], o16[1], o16[2], NULL};
    vit_status s1 = vit_forward(s, xr, B, NULL, &a), s2 = vit_forward_f16(s, h, B, NULL, &b);
    vit_outputs a2 = {.attn_rollout = o32[3]}, b2 = {.attn_rollout = o16[3]};
    vit_status s3 = vit_forward(s, xr, B, NULL, &a2), s4 = vit_forward_f16(s, h, B, NULL, &b2);
    CHECK(s1 == VIT_OK && s2 == VIT_OK && s3 == VIT_OK && s4 == VIT_OK, "forwards ok (%s)",
          vit_session_errmsg(s));
    const char *names[4] = {"logits", "features", "attn_cls", "rollout"};
    for (int i = 0; i < 4; i++)
        CHECK(!memcmp(o32[i], o16[i], sz[i] * 4),
              "vit_forward_f16 %s == vit_forward on the fp16-rounded input, bit for bit (B=%d, %zu values)",
              names[i], B, sz[i]);
    /* and not the same as the unrounded input: the comparison above would see a no-op path */
    float *l_orig = calloc(sz[0], 4);
    vit_outputs ao = {.logits = l_orig};
    vit_forward(s, x, B, NULL, &ao);
    CHECK(memcmp(l_orig, o16[0], sz[0] * 4) != 0, "logits of the unrounded input differ (test can tell)");
    free(l_orig);
    /* batch of 1 from the middle of the buffer: the conversion covers exactly B images */
    vit_outputs a1 = {.logits = o32[0]}, b1 = {.logits = o16[0]};
    const size_t img = n / B;
    s1 = vit_forward(s, xr + img, 1, NULL, &a1);
    s2 = vit_forward_f16(s, h + img, 1, NULL, &b1);
    CHECK(s1 == VIT_OK && s2 == VIT_OK && !memcmp(o32[0], o16[0], (size_t)C * 4),
          "B=1 from an offset: identical logits");

    vit_outputs e = {.logits = o16[0]};
    CHECK(vit_forward_f16(s, NULL, 1, NULL, &e) == VIT_E_ARG && strstr(vit_session_errmsg(s), "vit_forward_f16"),
          "vit_forward_f16: NULL input -> VIT_E_ARG (%s)", vit_session_errmsg(s));
    CHECK(vit_forward_f16(s, h, B + 2, NULL, &e) == VIT_E_ARG && vit_forward_f16(s, h, 0, NULL, &e) == VIT_E_ARG &&
              vit_forward_f16(NULL, h, 1, NULL, &e) == VIT_E_ARG && vit_forward_f16(s, h, 1, NULL, NULL) == VIT_E_ARG,
          "vit_forward_f16: bad batch / session / outputs -> VIT_E_ARG");
    /* vit_input_alloc's buffer holds an FP16 batch */
    float *ib = vit_input_alloc(s, B);
    CHECK(ib != NULL, "vit_input_alloc");
    if (ib) {
        memcpy(ib, h, n * 2);
        vit_outputs ar = {.logits = o32[0]}, br = {.logits = o16[0]};
        s1 = vit_forward(s, xr, B, NULL, &ar);
        s2 = vit_forward_f16(s, (const uint16_t *)ib, B, NULL, &br);
        CHECK(s1 == VIT_OK && s2 == VIT_OK && !memcmp(o32[0], o16[0], sz[0] * 4),
              "vit_forward_f16 from a vit_input_alloc buffer holding fp16: identical logits");
        vit_input_free(s, ib);
    }
    for (int i = 0; i < 4; i++) { free(o32[i]); free(o16[i]); }
out:
    vit_session_free(s);
    free(h); free(xr); free(x);
    vit_model_free(m);
}

int main(void) {
    test_roundtrip();
    test_ties();
    test_specials();
    test_numpy_fixture();
    test_compiler_f16();
    test_arrays();
    test_fast_path();
    test_cpu_forward();
    return TEST_SUMMARY();
}
