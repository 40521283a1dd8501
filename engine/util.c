/* util.c: status strings, error formatting, bounded file reads, .npy I/O, softmax/top-k. */
#include "util.h"
#include "knobs.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const status_str[VIT_STATUS_COUNT] = {
    [VIT_OK] = "ok",
    [VIT_E_ARG] = "invalid argument",
    [VIT_E_NOMEM] = "out of memory",
    [VIT_E_IO] = "i/o error",
    [VIT_E_CONFIG] = "invalid model config",
    [VIT_E_CHECKPOINT] = "invalid checkpoint",
    [VIT_E_IMAGE_FORMAT] = "unsupported image format",
    [VIT_E_IMAGE_TOO_LARGE] = "image too large",
    [VIT_E_IMAGE_CORRUPT] = "corrupt image",
    [VIT_E_DEVICE] = "device not available",
    [VIT_E_BACKEND] = "backend error",
    [VIT_E_CANCELLED] = "cancelled",
    [VIT_E_INTERNAL] = "internal error",
};

const char *vit_status_str(vit_status s) {
    if ((int)s < 0 || s >= VIT_STATUS_COUNT || !status_str[s]) return "unknown status";
    return status_str[s];
}

vit_status vit_errf(vit_status st, char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

double vit_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

vit_status vit_read_file(const char *path, size_t max_bytes, uint8_t **out, size_t *len,
                         char *err, size_t errlen) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return vit_errf(VIT_E_IO, err, errlen, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return vit_errf(VIT_E_IO, err, errlen, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > (uint64_t)max_bytes) {
        fclose(f);
        return vit_errf(VIT_E_ARG, err, errlen, "%s: %lld bytes, more than the limit of %zu",
                        path, (long long)st.st_size, max_bytes);
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return vit_errf(VIT_E_NOMEM, err, errlen, "%s: cannot allocate %zu bytes", path, n + 1);
    }
    size_t got = fread(buf, 1, n, f);
    int rerr = ferror(f);
    fclose(f);
    if (got != n || rerr) {
        free(buf);
        return vit_errf(VIT_E_IO, err, errlen, "%s: short read (%zu of %zu bytes)", path, got, n);
    }
    buf[n] = 0;
    *out = buf;
    *len = n;
    return VIT_OK;
}

/* ---- .npy ---- */

vit_status vit_npy_read(const char *path, float **data, int64_t *shape, int *ndim,
                        char *err, size_t errlen) {
    *data = NULL;
    *ndim = 0;
    uint8_t *buf;
    size_t len;
    vit_status st = vit_read_file(path, (size_t)1 << 34, &buf, &len, err, errlen);
    if (st) return st;
    st = VIT_E_ARG;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        vit_errf(st, err, errlen, "%s: not a .npy file", path);
        goto out;
    }
    size_t hlen, hoff;
    if (buf[6] == 1) { hlen = buf[8] | (size_t)buf[9] << 8; hoff = 10; }
    else if (len >= 12) {
        hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
        hoff = 12;
    } else { vit_errf(st, err, errlen, "%s: truncated header", path); goto out; }
    if (hlen > len - hoff) { vit_errf(st, err, errlen, "%s: header past end of file", path); goto out; }
    char hdr[4096];
    size_t hn = hlen < sizeof hdr - 1 ? hlen : sizeof hdr - 1;
    memcpy(hdr, buf + hoff, hn);
    hdr[hn] = 0;
    if (!strstr(hdr, "'descr': '<f4'")) { vit_errf(st, err, errlen, "%s: dtype is not little-endian float32", path); goto out; }
    if (strstr(hdr, "'fortran_order': True")) { vit_errf(st, err, errlen, "%s: fortran order not supported", path); goto out; }
    char *p = strstr(hdr, "'shape': (");
    if (!p) { vit_errf(st, err, errlen, "%s: no shape in header", path); goto out; }
    p += 10;
    int nd = 0;
    uint64_t count = 1;
    while (*p && *p != ')') {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ')') break;
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || nd >= 8) { vit_errf(st, err, errlen, "%s: bad shape", path); goto out; }
        shape[nd++] = v;
        if (v && count > UINT64_MAX / (uint64_t)v) { vit_errf(st, err, errlen, "%s: shape overflows", path); goto out; }
        count *= (uint64_t)v;
        p = end;
    }
    size_t off = hoff + hlen;
    if (count > (len - off) / 4) {
        vit_errf(st, err, errlen, "%s: data is %zu bytes, shape needs %llu", path, len - off,
                 (unsigned long long)count * 4);
        goto out;
    }
    float *d = malloc(count ? count * 4 : 4);
    if (!d) { st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path); goto out; }
    memcpy(d, buf + off, count * 4);
    *data = d;
    *ndim = nd;
    st = VIT_OK;
out:
    free(buf);
    return st;
}

vit_status vit_npy_write(const char *path, const float *data, const int64_t *shape, int ndim,
                         char *err, size_t errlen) {
    char dims[256] = "";
    size_t used = 0;
    uint64_t count = 1;
    for (int i = 0; i < ndim; i++) {
        used += (size_t)snprintf(dims + used, sizeof dims - used, "%lld,%s", (long long)shape[i],
                                 (ndim > 1 && i < ndim - 1) ? " " : "");
        count *= (uint64_t)shape[i];
        if (used >= sizeof dims) return vit_errf(VIT_E_ARG, err, errlen, "too many dims");
    }
    if (ndim > 1) dims[used - 1] = 0; /* (a, b) not (a, b,) */
    char hdr[512];
    int n = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", dims);
    int total = 10 + n + 1;
    int pad = (64 - total % 64) % 64;
    FILE *f = fopen(path, "wb");
    if (!f) return vit_errf(VIT_E_IO, err, errlen, "%s: %s", path, strerror(errno));
    uint16_t hl = (uint16_t)(n + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hl & 0xff), (unsigned char)(hl >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)n, f) == (size_t)n;
    for (int i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF;
    ok = ok && fwrite(data, 4, count, f) == count;
    if (fclose(f) != 0) ok = 0;
    if (!ok) return vit_errf(VIT_E_IO, err, errlen, "%s: write failed", path);
    return VIT_OK;
}

/* ---- softmax / top-k ---- */

void vit_softmax(float *x, int n) {
    if (n <= 0) return;
    float m = x[0];
    for (int i = 1; i < n; i++) if (x[i] > m) m = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - m); s += x[i]; }
    float inv = (float)(1.0 / s);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

int vit_topk(const float *x, int n, int k, int *idx) {
    if (k > n) k = n;
    if (k <= 0) return 0;
    int filled = 0;
    for (int i = 0; i < n; i++) {
        /* insertion into the sorted prefix idx[0..filled) (k is small) */
        if (filled == k && !(x[i] > x[idx[k - 1]])) continue;
        int j = filled < k ? filled++ : k - 1;
        while (j > 0 && x[i] > x[idx[j - 1]]) { idx[j] = idx[j - 1]; j--; }
        idx[j] = i;
    }
    return k;
}

/* ---- FP32 <-> FP16 (IEEE binary16) ---- */
/* The portable versions are bit manipulation only (no FPU rounding mode involved: the same results
 * on every host) and are the reference; on x86-64 hosts with F16C, vit_f32_to_f16/vit_f16_to_f32
 * run the hardware conversion (vcvtps2ph with round-to-nearest-even, vcvtph2ps), chosen once at
 * run time, which gives the same bits for every input: NaNs are quieted both ways (IEEE 754's
 * conversion of a signalling NaN), sign and payload kept.  The one implementation in the tree
 * (safetensors' F16 tensors, vit_forward_f16, vitd's FP16 batches). */

static inline uint16_t f32_to_f16_one(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {                 /* inf; NaN: quiet, the payload's top bits kept */
        if (x == 0x7f800000u) return sign | 0x7c00u;
        return sign | 0x7e00u | (uint16_t)((x >> 13) & 0x3ffu);
    }
    if (x >= 0x477ff000u) return sign | 0x7c00u;   /* >= 65520: the tie above 65504 goes to inf */
    if (x >= 0x38800000u) {                 /* normal half: rebias the exponent, round the
                                               13 dropped bits to nearest even (a carry into the
                                               exponent is the right result) */
        uint32_t r = x - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return sign | (uint16_t)(r >> 13);
    }
    if (x <= 0x33000000u) return sign;      /* <= 2^-25: to (signed) zero, the tie included */
    /* subnormal half: value / 2^-24 = m * 2^(e - 126) with the implicit bit, sh in [14, 24] */
    const uint32_t e = x >> 23, m = (x & 0x7fffffu) | 0x800000u, sh = 126u - e;
    uint32_t q = m >> sh;
    const uint32_t rem = m & ((1u << sh) - 1u), half = 1u << (sh - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;   /* 0x3ff + 1 = the smallest normal */
    return sign | (uint16_t)q;
}

static inline float f16_to_f32_one(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {                      /* subnormal: normalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400u));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {         /* inf; NaN: quiet, payload kept */
        bits = sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0u);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void vit_f32_to_f16_portable(const float *x, uint16_t *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = f32_to_f16_one(x[i]);
}

void vit_f16_to_f32_portable(const uint16_t *x, float *y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = f16_to_f32_one(x[i]);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <stdatomic.h>
#include <immintrin.h>
#define VIT_HAVE_F16C_PATH 1

/* CPUID.1:ECX has AVX (28), F16C (29) and OSXSAVE (27); XCR0 bits 1-2: the OS saves YMM state */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 27) & 1u) || !((c >> 28) & 1u) || !((c >> 29) & 1u)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    (void)hi;
    return (lo & 6u) == 6u;
}

__attribute__((target("avx,f16c"))) static void f32_to_f16_f16c(const float *x, uint16_t *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = f32_to_f16_one(x[i]);
}

__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const uint16_t *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = f16_to_f32_one(x[i]);
}
#endif

int vit_f16c_available(void) {
#ifdef VIT_HAVE_F16C_PATH
    /* every thread that finds it unset computes the same value: relaxed atomics suffice */
    static atomic_int cached = -1;
    int c = atomic_load_explicit(&cached, memory_order_relaxed);
    if (c < 0) {
        c = cpu_has_f16c();
        if (vit_knob_int(VIT_KNOB_NO_F16C)) c = 0;   /* tests: force the portable path */
        atomic_store_explicit(&cached, c, memory_order_relaxed);
    }
    return c;
#else
    return 0;
#endif
}

void vit_f32_to_f16(const float *x, uint16_t *y, size_t n) {
#ifdef VIT_HAVE_F16C_PATH
    if (vit_f16c_available()) { f32_to_f16_f16c(x, y, n); return; }
#endif
    vit_f32_to_f16_portable(x, y, n);
}

void vit_f16_to_f32(const uint16_t *x, float *y, size_t n) {
#ifdef VIT_HAVE_F16C_PATH
    if (vit_f16c_available()) { f16_to_f32_f16c(x, y, n); return; }
#endif
    vit_f16_to_f32_portable(x, y, n);
}
