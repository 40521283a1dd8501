/* preprocess.c: RGB8 pixels -> the model's normalized input tensor (C, out_h, out_w), C = 3, or 1
 * for one-channel models (PIL's convert("L") luminance, see luma_row).  The
 * settings come from the model directory (io/preprocess_config.c).
 *
 * Resampling reproduces PIL's Image.resize (what torchvision's Resize, Hugging Face's image
 * processors and timm all call on PIL images): separable, horizontal pass first, the filter's
 * support widened by the downscale factor (antialiasing), each output's taps normalized to sum
 * to 1, bicubic with a = -0.5.  PIL rounds to uint8 after each pass; we stay in float and only
 * clamp to [0, 255] after each pass, which keeps us within a fraction of one 8-bit level of PIL.
 * Center crop offsets are torchvision's: round((h - ch) / 2.0) with Python's half-to-even
 * rounding; a crop larger than the image pads with zeros as torchvision does.
 * Only the resized pixels that survive the crop are computed. */
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_internal.h"
#include "util.h"

/* ---- PIL's filters (libImaging/Resample.c semantics) ---------------------------------- */

static double f_box(double x) { return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0; }
static double f_bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}
static double f_hamming(double x) {
    if (x < 0.0) x = -x;
    if (x == 0.0) return 1.0;
    if (x >= 1.0) return 0.0;
    x *= M_PI;
    return sin(x) / x * (0.54 + 0.46 * cos(x));
}
static double f_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}
static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}
static double f_lanczos(double x) { return (-3.0 <= x && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0; }

typedef struct { double (*fn)(double); double support; } filter;

static int get_filter(int resample, filter *f) {
    switch (resample) {
    case 1: *f = (filter){f_lanczos, 3.0}; return 1;
    case VIT_RESAMPLE_BILINEAR: *f = (filter){f_bilinear, 1.0}; return 1;
    case VIT_RESAMPLE_BICUBIC: *f = (filter){f_bicubic, 2.0}; return 1;
    case 4: *f = (filter){f_box, 0.5}; return 1;
    case 5: *f = (filter){f_hamming, 1.0}; return 1;
    default: return 0;  /* nearest: handled apart */
    }
}

/* Taps for outputs first..first+count-1 of an in_size -> out_size resize along one axis.
 * lo[i], n[i]: first input index and tap count of output i; w[i*ksize + k] its weights. */
#define PIL_PRECISION_BITS (32 - 8 - 2)  /* PIL's fixed point for 8-bit images */

typedef struct {
    int count, ksize;
    int *lo, *n;
    float *w;
    int32_t *iw;   /* the same taps in PIL's fixed point (weights * 2^22, rounded away from 0) */
} taps;

static void taps_free(taps *t) {
    free(t->lo);
    free(t->w);
    free(t->iw);
    t->lo = t->n = NULL;
    t->w = NULL;
    t->iw = NULL;
}

static int32_t pil_fixed(double w) {
    return w < 0 ? (int32_t)(-0.5 + w * (1 << PIL_PRECISION_BITS)) : (int32_t)(0.5 + w * (1 << PIL_PRECISION_BITS));
}

/* taps per output of an in_size -> out_size resize (what taps_make will use) */
static int taps_ksize(int resample, int in_size, int out_size) {
    filter f;
    if (!get_filter(resample, &f)) return 1;
    const double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    return (int)ceil(f.support * filterscale) * 2 + 1;
}

static vit_status taps_make(taps *t, int resample, int in_size, int out_size, int first, int count) {
    memset(t, 0, sizeof *t);
    filter f;
    const double scale = (double)in_size / out_size;
    if (!get_filter(resample, &f)) {
        /* PIL NEAREST: the input pixel under the output pixel's center */
        t->count = count;
        t->ksize = 1;
        t->lo = malloc(sizeof(int) * 2 * (size_t)count);
        t->w = malloc(sizeof(float) * (size_t)count);
        t->iw = malloc(sizeof(int32_t) * (size_t)count);
        if (!t->lo || !t->w || !t->iw) { taps_free(t); return VIT_E_NOMEM; }
        t->n = t->lo + count;
        for (int i = 0; i < count; i++) {
            int x = (int)((first + i + 0.5) * scale);
            t->lo[i] = x < in_size ? x : in_size - 1;
            t->n[i] = 1;
            t->w[i] = 1.f;
            t->iw[i] = 1 << PIL_PRECISION_BITS;
        }
        return VIT_OK;
    }
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = f.support * filterscale;
    const int ksize = (int)ceil(support) * 2 + 1;
    t->count = count;
    t->ksize = ksize;
    t->lo = malloc(sizeof(int) * 2 * (size_t)count);
    t->w = malloc(sizeof(float) * (size_t)count * (size_t)ksize);
    t->iw = malloc(sizeof(int32_t) * (size_t)count * (size_t)ksize);
    if (!t->lo || !t->w || !t->iw) { taps_free(t); return VIT_E_NOMEM; }
    t->n = t->lo + count;
    const double ss = 1.0 / filterscale;
    for (int i = 0; i < count; i++) {
        const double center = (first + i + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        /* the filter is evaluated twice (its sum, then each normalized tap) rather than kept in a
         * ksize-long array on the stack: ksize grows with the downscale factor */
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) ww += f.fn((x + xmin - center + 0.5) * ss);
        float *w = t->w + (size_t)i * ksize;
        int32_t *iw = t->iw + (size_t)i * ksize;
        for (int x = 0; x < ksize; x++) {
            double k = x < xmax ? f.fn((x + xmin - center + 0.5) * ss) : 0.0;
            double v = x < xmax ? (ww != 0.0 ? k / ww : k) : 0.0;
            w[x] = (float)v;
            iw[x] = pil_fixed(v);
        }
        t->lo[i] = xmin;
        t->n[i] = xmax;
    }
    return VIT_OK;
}

/* ---- sizes ------------------------------------------------------------------------------ */

void vit_preprocess_resized_size(const vit_preprocess *pp, int w, int h, int *rw, int *rh) {
    if (!pp->do_resize) { *rw = w; *rh = h; return; }
    if (pp->shortest_edge > 0) {
        /* torchvision: new_long = int(size * long / short) (Python float division, truncated) */
        int s = pp->shortest_edge;
        int shrt = w <= h ? w : h, lng = w <= h ? h : w;
        double l = (double)s * (double)lng / (double)shrt;
        int nl = l >= (double)(1 << 30) ? 1 << 30 : (int)l;  /* absurd aspect ratios: refused later */
        if (nl < 1) nl = 1;
        if (w <= h) { *rw = s; *rh = nl; } else { *rw = nl; *rh = s; }
        return;
    }
    *rw = pp->resize_w;
    *rh = pp->resize_h;
}

/* torchvision CenterCrop offset of a crop c out of n: int(round((n - c) / 2.0)) with Python's
 * half-to-even rounding; when c > n torchvision pads by (c - n) // 2 first, so the offset is negative.
 * Hugging Face's image processors (hf = 1) take floor((n - c) / 2) instead, padding included. */
static int crop_offset(int n, int c, int hf) {
    if (hf) return n >= c ? (n - c) / 2 : -((c - n + 1) / 2);  /* Hugging Face: floor((n - c) / 2) */
    if (c > n) return -((c - n) / 2);
    int d = n - c, q = d / 2;
    if (d % 2 == 0) return q;
    return (q % 2 == 0) ? q : q + 1;
}

/* ---- image -> tensor -------------------------------------------------------------------- */

/* One pixel in float, RGB + an unused lane: 4-wide SIMD on any target GCC/Clang supports. */
typedef float v4f __attribute__((vector_size(16)));

typedef int32_t v4i __attribute__((vector_size(16)));

/* dst[i] = src[i] for n bytes */
static inline void u8_to_f32(const uint8_t *src, float *dst, int n) {
    int i = 0;
#ifdef __SSE2__
    const __m128i z = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i lo = _mm_unpacklo_epi8(b, z), hi = _mm_unpackhi_epi8(b, z);
        _mm_storeu_ps(dst + i, _mm_cvtepi32_ps(_mm_unpacklo_epi16(lo, z)));
        _mm_storeu_ps(dst + i + 4, _mm_cvtepi32_ps(_mm_unpackhi_epi16(lo, z)));
        _mm_storeu_ps(dst + i + 8, _mm_cvtepi32_ps(_mm_unpacklo_epi16(hi, z)));
        _mm_storeu_ps(dst + i + 12, _mm_cvtepi32_ps(_mm_unpackhi_epi16(hi, z)));
    }
#endif
    for (; i < n; i++) dst[i] = src[i];
}

static inline v4f clamp4(v4f a) {
    const v4f lo = {0.f, 0.f, 0.f, 0.f}, hi = {255.f, 255.f, 255.f, 255.f};
    v4i m = a < lo;
    a = (v4f)((v4i)a & ~m);
    m = a > hi;
    return (v4f)(((v4i)a & ~m) | ((v4i)hi & m));
}

/* the vertical pass's two loops over n floats (n a multiple of 4), in explicit 8-float vectors:
 * GCC 12 at -O2 does not vectorize the plain loops (cheap cost model, unknown trip count) */
typedef float v8f __attribute__((vector_size(32)));
static inline void row_scale(float *a, const float *t, float w, size_t n) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        v8f x;
        memcpy(&x, t + j, sizeof x);
        x *= w;
        memcpy(a + j, &x, sizeof x);
    }
    for (; j < n; j++) a[j] = w * t[j];
}
static inline void row_axpy(float *a, const float *t, float w, size_t n) {
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        v8f x, y;
        memcpy(&x, t + j, sizeof x);
        memcpy(&y, a + j, sizeof y);
        y += w * x;
        memcpy(a + j, &y, sizeof y);
    }
    for (; j < n; j++) a[j] += w * t[j];
}

/* The horizontal pass four outputs at a time in one 512-bit register (each output's pixel in
 * its own 128-bit lane), on CPUs with AVX-512: the same multiplies and adds in the same order as
 * the 4-float loop of vit_pp_plan_run, so the result is bit-identical, with about half the
 * instructions.  vit_pp_set_simd(0) (tests) turns it off. */
static int pp_simd = -1; /* -1: AVX-512 if the CPU has it */

void vit_pp_set_simd(int on) { pp_simd = on ? -1 : 0; }

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
static int hpass_simd(void) {
    if (pp_simd == 0) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
}

/* t[4g + i] = sum_k wq[g][k][4i..4i+3] * pixel(off[4g + i] + k), g < ngroups */
__attribute__((target("avx512f"))) static void hpass4_avx512(const float *rowf, const int *off,
                                                             const float *wq, int ngroups, int kx,
                                                             float *t) {
    for (int g = 0; g < ngroups; g++) {
        const float *p0 = rowf + 3 * off[4 * g], *p1 = rowf + 3 * off[4 * g + 1];
        const float *p2 = rowf + 3 * off[4 * g + 2], *p3 = rowf + 3 * off[4 * g + 3];
        const float *w = wq + (size_t)g * kx * 16;
        __m512 acc = _mm512_setzero_ps();
        for (int k = 0; k < kx; k++) {
            __m512 p = _mm512_castps128_ps512(_mm_loadu_ps(p0 + 3 * k));
            p = _mm512_insertf32x4(p, _mm_loadu_ps(p1 + 3 * k), 1);
            p = _mm512_insertf32x4(p, _mm_loadu_ps(p2 + 3 * k), 2);
            p = _mm512_insertf32x4(p, _mm_loadu_ps(p3 + 3 * k), 3);
            acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(w + 16 * k), p));
        }
        _mm512_storeu_ps(t + 16 * g, acc);
    }
}
#else
static int hpass_simd(void) { return 0; }
static void hpass4_avx512(const float *rowf, const int *off, const float *wq, int ngroups, int kx,
                          float *t) {
    (void)rowf; (void)off; (void)wq; (void)ngroups; (void)kx; (void)t;
}
#endif

#define PP_MAX_TAPS       ((uint64_t)1 << 22)   /* both passes' taps together: 32 MB (float + fixed point) */
#define PP_WORK_PER_PIXEL 16
#define PP_WORK_MIN       ((uint64_t)1 << 25)

/* Everything about one (W x H image, settings) pair that does not depend on the pixels: the taps
 * of both passes for the outputs inside the crop, and the input region they read. */
struct vit_pp_plan {
    int W, H, OW, OH;
    int ox0, oy0, nx, ny;        /* outputs inside the resized image (the rest is zero padding) */
    int padded;
    int xmin, xmax, ymin, ymax;  /* input columns / rows the taps touch */
    taps tx, ty;
    int *xoff;                   /* (nx): tx.lo - xmin */
    float *wq;                   /* (nx / 4, kx, 16): the horizontal taps of 4 outputs side by side,
                                    each weight repeated over its pixel's 4 lanes (AVX-512 pass) */
    int negative_lobes;          /* the filter can overshoot [0, 255] (bicubic, lanczos) */
    int nch;                     /* output planes: 3 (RGB) or 1 (PIL's convert("L") luminance) */
    float scale[3], bias[3];
    int pil_exact;               /* PIL's 8-bit fixed-point passes; then lut maps each 8-bit value */
    float lut[3][256];           /* as torchvision's ToTensor + Normalize compute it */
};

void vit_pp_plan_free(vit_pp_plan *pl) {
    if (!pl) return;
    taps_free(&pl->tx);
    taps_free(&pl->ty);
    free(pl->xoff);
    free(pl->wq);
    free(pl);
}

/* The resize target rw x rh of a W x H image and the crop window's top-left corner in resized
 * coordinates (negative: padding); without a crop the resized image must be the output. */
static vit_status plan_geometry(const vit_preprocess *pp, int W, int H, int *rw, int *rh, int *top, int *left,
                                char *err, size_t errlen) {
    const int OH = pp->out_h, OW = pp->out_w;
    if (OH <= 0 || OW <= 0 || OH > 16384 || OW > 16384)
        return vit_errf(VIT_E_ARG, err, errlen, "bad output size %dx%d", OW, OH);
    vit_preprocess_resized_size(pp, W, H, rw, rh);
    if (*rw <= 0 || *rh <= 0) return vit_errf(VIT_E_ARG, err, errlen, "bad resize target %dx%d", *rw, *rh);
    if (*rw > (1 << 24) || *rh > (1 << 24))  /* only the crop is computed, but beyond this we refuse */
        return vit_errf(VIT_E_IMAGE_TOO_LARGE, err, errlen,
                        "image too large: a %dx%d image would be resized to %dx%d (aspect ratio too extreme)", W, H,
                        *rw, *rh);
    *top = *left = 0;
    if (pp->do_center_crop) {
        *top = crop_offset(*rh, OH, pp->crop_floor);
        *left = crop_offset(*rw, OW, pp->crop_floor);
    } else if (*rw != OW || *rh != OH) {
        return vit_errf(VIT_E_ARG, err, errlen, "resize gives %dx%d but the model needs %dx%d (no center crop)",
                        *rw, *rh, OW, OH);
    }
    return VIT_OK;
}

/* The output planes and the rescale + normalize of each channel: scale and bias for the float
 * passes, lut for PIL's 8-bit ones. */
static vit_status plan_normalize(vit_pp_plan *pl, const vit_preprocess *pp, char *err, size_t errlen) {
    pl->nch = pp->channels ? pp->channels : 3;
    if (pl->nch != 1 && pl->nch != 3)
        return vit_errf(VIT_E_ARG, err, errlen, "%d channels: only 1 (luminance) or 3 (RGB)", pp->channels);
    for (int c = 0; c < 3; c++) {
        float r = pp->do_rescale ? pp->rescale_factor : 1.f;
        float m = pp->do_normalize ? pp->mean[c] : 0.f;
        float s = pp->do_normalize ? pp->std[c] : 1.f;
        if (!(s != 0.f)) return vit_errf(VIT_E_ARG, err, errlen, "std[%d] is zero", c);
        pl->scale[c] = r / s;
        pl->bias[c] = -m / s;
    }
    pl->pil_exact = pp->pil_exact;
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            /* torchvision: x.float().div(255), then (x - mean) / std, all in float32 */
            float r = (float)v;
            if (pp->do_rescale) r = pp->rescale_factor == 1.f / 255.f ? r / 255.f : r * pp->rescale_factor;
            pl->lut[c][v] = pp->do_normalize ? (r - pp->mean[c]) / pp->std[c] : r;
        }
    return VIT_OK;
}

/* The outputs inside the resized image: rows [oy0, oy0 + ny), cols [ox0, ox0 + nx); the rest is
 * padding.  The input region defaults to one pixel (nothing is read when nx or ny is 0). */
static void plan_window(vit_pp_plan *pl, int rw, int rh, int top, int left) {
    const int OH = pl->OH, OW = pl->OW;
    int oy0 = top < 0 ? -top : 0, ox0 = left < 0 ? -left : 0;
    int oy1 = rh - top < OH ? rh - top : OH, ox1 = rw - left < OW ? rw - left : OW;
    pl->padded = oy0 > 0 || ox0 > 0 || oy1 < OH || ox1 < OW;
    pl->ox0 = ox0; pl->oy0 = oy0;
    pl->nx = ox1 > ox0 ? ox1 - ox0 : 0;
    pl->ny = oy1 > oy0 ? oy1 - oy0 : 0;
    pl->xmin = pl->ymin = 0;
    pl->xmax = pl->ymax = 1;
}

/* The taps of both passes for the window's outputs, and the input columns and rows they touch.
 * Tap memory and work follow out_w x in_h (and out_h x in_w), not the pixel count: a 1 x 50M
 * image squashed to 224 x 224 needs 224 x 446k horizontal taps (800 MB).  Refuse a plan with
 * more than PP_MAX_TAPS taps, or (once the rows read are known) more multiply-adds than
 * PP_WORK_PER_PIXEL per input pixel plus PP_WORK_MIN: an ordinary resize needs at most ~12 per
 * pixel (lanczos downscaling), only absurd aspect ratios need more. */
static vit_status plan_taps(vit_pp_plan *pl, int resample, int rw, int rh, int top, int left, char *err,
                            size_t errlen) {
    const int W = pl->W, H = pl->H;
    const uint64_t kx_est = (uint64_t)taps_ksize(resample, W, rw), ky_est = (uint64_t)taps_ksize(resample, H, rh);
    const uint64_t ntaps = (uint64_t)pl->nx * kx_est + (uint64_t)pl->ny * ky_est;
    if (ntaps > PP_MAX_TAPS)
        return vit_errf(VIT_E_IMAGE_TOO_LARGE, err, errlen,
                        "image too large: resizing a %dx%d image to %dx%d needs %llu filter taps, more than %llu "
                        "(aspect ratio too extreme)", W, H, rw, rh, (unsigned long long)ntaps,
                        (unsigned long long)PP_MAX_TAPS);
    if (taps_make(&pl->tx, resample, W, rw, pl->ox0 + left, pl->nx) ||
        taps_make(&pl->ty, resample, H, rh, pl->oy0 + top, pl->ny))
        return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory (resize taps)");
    int xmin = W, xmax = 0, ymin = H, ymax = 0;
    for (int i = 0; i < pl->nx; i++) {
        if (pl->tx.n[i] <= 0) continue;
        if (pl->tx.lo[i] < xmin) xmin = pl->tx.lo[i];
        if (pl->tx.lo[i] + pl->tx.n[i] > xmax) xmax = pl->tx.lo[i] + pl->tx.n[i];
    }
    for (int i = 0; i < pl->ny; i++) {
        if (pl->ty.n[i] <= 0) continue;
        if (pl->ty.lo[i] < ymin) ymin = pl->ty.lo[i];
        if (pl->ty.lo[i] + pl->ty.n[i] > ymax) ymax = pl->ty.lo[i] + pl->ty.n[i];
    }
    if (xmax <= xmin) { xmin = 0; xmax = 1; }
    if (ymax <= ymin) { ymin = 0; ymax = 1; }
    pl->xmin = xmin; pl->xmax = xmax; pl->ymin = ymin; pl->ymax = ymax;
    const uint64_t work = (uint64_t)(ymax - ymin) * (uint64_t)pl->nx * (uint64_t)pl->tx.ksize +
                          (uint64_t)pl->ny * (uint64_t)pl->nx * (uint64_t)pl->ty.ksize;
    if (work > PP_WORK_PER_PIXEL * (uint64_t)W * (uint64_t)H + PP_WORK_MIN)
        return vit_errf(VIT_E_IMAGE_TOO_LARGE, err, errlen,
                        "image too large: resizing a %dx%d image to %dx%d takes %llu multiply-adds per channel, "
                        "more than %d per pixel (aspect ratio too extreme)", W, H, rw, rh, (unsigned long long)work,
                        PP_WORK_PER_PIXEL);
    return VIT_OK;
}

/* What the horizontal pass reads besides the taps: each output's first column relative to
 * xmin, whether any weight is negative, and (AVX-512, float passes) the taps of 4 outputs side
 * by side. */
static vit_status plan_hpass(vit_pp_plan *pl, char *err, size_t errlen) {
    const int kx = pl->tx.ksize, nx = pl->nx;
    pl->xoff = malloc(sizeof(int) * (size_t)nx);
    if (!pl->xoff) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory (resize taps)");
    for (int x = 0; x < nx; x++) pl->xoff[x] = pl->tx.n[x] > 0 ? pl->tx.lo[x] - pl->xmin : 0;
    for (size_t i = 0; i < (size_t)kx * nx; i++) pl->negative_lobes |= pl->tx.w[i] < 0.f;
    for (size_t i = 0; i < (size_t)pl->ty.ksize * pl->ny; i++) pl->negative_lobes |= pl->ty.w[i] < 0.f;
    if (!pl->pil_exact && nx >= 4 && hpass_simd()) {
        size_t ng = (size_t)nx / 4;
        pl->wq = malloc(sizeof(float) * ng * kx * 16);
        if (!pl->wq) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory (resize taps)");
        for (size_t g = 0; g < ng; g++)
            for (int k = 0; k < kx; k++)
                for (int i = 0; i < 16; i++)
                    pl->wq[(g * kx + k) * 16 + i] = pl->tx.w[(4 * g + i / 4) * kx + k];
    }
    return VIT_OK;
}

vit_status vit_pp_plan_make(const vit_preprocess *pp, int W, int H, vit_pp_plan **out, char *err, size_t errlen) {
    *out = NULL;
    int rw, rh, top, left;
    vit_status st = plan_geometry(pp, W, H, &rw, &rh, &top, &left, err, errlen);
    if (st) return st;
    vit_pp_plan *pl = calloc(1, sizeof *pl);
    if (!pl) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory (resize plan)");
    pl->W = W; pl->H = H; pl->OW = pp->out_w; pl->OH = pp->out_h;
    st = plan_normalize(pl, pp, err, errlen);
    if (!st) plan_window(pl, rw, rh, top, left);
    if (!st && pl->nx > 0 && pl->ny > 0) {          /* else every output is padding: no taps */
        st = plan_taps(pl, pp->resample, rw, rh, top, left, err, errlen);
        if (!st) st = plan_hpass(pl, err, errlen);
    }
    if (st) { vit_pp_plan_free(pl); return st; }
    *out = pl;
    return VIT_OK;
}

void vit_pp_plan_region(const vit_pp_plan *pl, int *x0, int *y0, int *x1, int *y1) {
    *x0 = pl->xmin; *y0 = pl->ymin; *x1 = pl->xmax; *y1 = pl->ymax;
}

/* src holds the input region [rx0, rx0 + rw) x [ry0, ry0 + rh) of the W x H image as RGB8 rows
 * of `stride` bytes; it must cover the plan's region.  out is (3, OH, OW). */
static inline v4i pil_clip8_4(v4i in) {
    const v4i zero = {0, 0, 0, 0}, top = {255, 255, 255, 255};
    v4i v = in >> PIL_PRECISION_BITS;   /* arithmetic shift; negatives and overflow clipped below */
    v4i neg = in <= zero, big = in >= (v4i){1 << 30, 1 << 30, 1 << 30, 1 << 30};
    v = (v & ~neg) & ~big;
    return v | (top & big);
}

/* dst[i] = src[i] for n bytes, as int32 */
static inline void u8_to_i32(const uint8_t *src, int32_t *dst, int n) {
    int i = 0;
#ifdef __SSE2__
    const __m128i z = _mm_setzero_si128();
    for (; i + 16 <= n; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i lo = _mm_unpacklo_epi8(b, z), hi = _mm_unpackhi_epi8(b, z);
        _mm_storeu_si128((__m128i *)(dst + i), _mm_unpacklo_epi16(lo, z));
        _mm_storeu_si128((__m128i *)(dst + i + 4), _mm_unpackhi_epi16(lo, z));
        _mm_storeu_si128((__m128i *)(dst + i + 8), _mm_unpacklo_epi16(hi, z));
        _mm_storeu_si128((__m128i *)(dst + i + 12), _mm_unpackhi_epi16(hi, z));
    }
#endif
    for (; i < n; i++) dst[i] = src[i];
}

/* One-channel models: each pixel's luminance as Pillow's convert("L") computes it (ITU-R 601-2,
 * libImaging/Convert.c rgb2l: (R*19595 + G*38470 + B*7471 + 0x8000) >> 16), repeated in the three
 * lanes so that the RGB passes below resize it unchanged; only plane 0 is written.  Gray inputs
 * (R = G = B) keep their values exactly.  Returns dst (3 * npix bytes). */
static const uint8_t *luma_row(uint8_t *dst, const uint8_t *src, int npix) {
    for (int i = 0; i < npix; i++) {
        const uint8_t *p = src + 3 * i;
        uint8_t l = (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u + 0x8000u) >> 16);
        dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = l;
    }
    return dst;
}

/* PIL's ImagingResampleHorizontal_8bpc / Vertical_8bpc: integer taps (weights * 2^22), a rounding
 * half added, the sum shifted and clipped to 8 bits after each pass, so the crop equals
 * torchvision's uint8 image bit for bit.  Same layout as the float path, in int32 lanes. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))
#endif
static vit_status plan_run_pil(const vit_pp_plan *pl, const uint8_t *src, size_t stride, int rx0, int ry0,
                               float *out, char *err, size_t errlen) {
    const int nx = pl->nx, ny = pl->ny, nrows = pl->ymax - pl->ymin, OW = pl->OW;
    const int xmin = pl->xmin, xw = pl->xmax - pl->xmin;
    const size_t plane = (size_t)pl->OH * OW;
    const taps *tx = &pl->tx, *ty = &pl->ty;
    const int kx = tx->ksize, ky = ty->ksize;
    const int32_t half = 1 << (PIL_PRECISION_BITS - 1);
    const v4i halfv = {half, half, half, half};
    /* rowi: one row's needed columns as int32, RGB interleaved, zero padded; tmp: (nrows, nx) */
    const size_t rowi_n = ((size_t)3 * (xw + kx) + 16 + 3) & ~(size_t)3;
    int32_t *buf = aligned_alloc(16, sizeof(int32_t) * (rowi_n + 4 * (size_t)nrows * nx));
    uint8_t *luma = pl->nch == 1 ? malloc((size_t)3 * xw) : NULL;
    if (!buf || (pl->nch == 1 && !luma)) {
        free(buf);
        free(luma);
        return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory (resize buffer)");
    }
    int32_t *rowi = buf;
    v4i *tmp = (v4i *)(buf + rowi_n);
    for (size_t i = (size_t)3 * xw; i < rowi_n; i++) rowi[i] = 0;
    const int *off = pl->xoff;
    const int32_t *tw = tx->iw;
    for (int y = pl->ymin; y < pl->ymax; y++) {
        const uint8_t *row = src + (size_t)(y - ry0) * stride + (size_t)(xmin - rx0) * 3;
        u8_to_i32(luma ? luma_row(luma, row, xw) : row, rowi, 3 * xw);
        v4i *t = tmp + (size_t)(y - pl->ymin) * nx;
        int x = 0;
        for (; x + 4 <= nx; x += 4) {
            const int32_t *p0 = rowi + 3 * off[x], *p1 = rowi + 3 * off[x + 1];
            const int32_t *p2 = rowi + 3 * off[x + 2], *p3 = rowi + 3 * off[x + 3];
            const int32_t *w0 = tw + (size_t)x * kx, *w1 = w0 + kx, *w2 = w1 + kx, *w3 = w2 + kx;
            v4i a0 = halfv, a1 = halfv, a2 = halfv, a3 = halfv, q;
            for (int k = 0; k < kx; k++) {
                memcpy(&q, p0 + 3 * k, 16); a0 += w0[k] * q;
                memcpy(&q, p1 + 3 * k, 16); a1 += w1[k] * q;
                memcpy(&q, p2 + 3 * k, 16); a2 += w2[k] * q;
                memcpy(&q, p3 + 3 * k, 16); a3 += w3[k] * q;
            }
            t[x] = pil_clip8_4(a0); t[x + 1] = pil_clip8_4(a1); t[x + 2] = pil_clip8_4(a2); t[x + 3] = pil_clip8_4(a3);
        }
        for (; x < nx; x++) {
            const int32_t *p0 = rowi + 3 * off[x], *w0 = tw + (size_t)x * kx;
            v4i a0 = halfv, q;
            for (int k = 0; k < kx; k++) { memcpy(&q, p0 + 3 * k, 16); a0 += w0[k] * q; }
            t[x] = pil_clip8_4(a0);
        }
    }
    for (int i = 0; i < ny; i++) {
        const int32_t *w = ty->iw + (size_t)i * ky;
        const v4i *t0 = tmp + (size_t)(ty->lo[i] - pl->ymin) * nx;
        const int n = ty->n[i];
        const size_t os = (size_t)(pl->oy0 + i) * OW + pl->ox0;
        for (int x = 0; x < nx; x += 4) {
            const int m = nx - x < 4 ? nx - x : 4;
            v4i a[4] = {halfv, halfv, halfv, halfv};
            for (int k = 0; k < n; k++) {
                const v4i *tk = t0 + (size_t)k * nx + x;
                const int32_t wk = w[k];
                for (int j = 0; j < m; j++) a[j] += wk * tk[j];
            }
            for (int j = 0; j < m; j++) {
                v4i c = pil_clip8_4(a[j]);
                out[os + x + j] = pl->lut[0][c[0]];
                if (pl->nch == 1) continue;
                out[plane + os + x + j] = pl->lut[1][c[1]];
                out[2 * plane + os + x + j] = pl->lut[2][c[2]];
            }
        }
    }
    free(buf);
    free(luma);
    return VIT_OK;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
__attribute__((target_clones("avx2", "default")))  /* the same code, 3-operand AVX + pmovzx on CPUs that have it */
#endif
vit_status vit_pp_plan_run(const vit_pp_plan *pl, const uint8_t *src, size_t stride, int rx0, int ry0, int rw,
                           int rh, float *out, char *err, size_t errlen) {
    const int OW = pl->OW, OH = pl->OH;
    const size_t plane = (size_t)OH * OW;
    if (pl->padded)  /* padding pixels are 0 before normalization */
        for (int c = 0; c < pl->nch; c++)
            for (size_t i = 0; i < plane; i++) out[c * plane + i] = pl->pil_exact ? pl->lut[c][0] : pl->bias[c];
    if (pl->nx == 0 || pl->ny == 0) return VIT_OK;
    if (pl->xmin < rx0 || pl->ymin < ry0 || pl->xmax > rx0 + rw || pl->ymax > ry0 + rh)
        return vit_errf(VIT_E_INTERNAL, err, errlen, "decoded region does not cover the resize taps");
    if (pl->pil_exact) return plan_run_pil(pl, src, stride, rx0, ry0, out, err, errlen);
    const int nx = pl->nx, ny = pl->ny, xmin = pl->xmin, xw = pl->xmax - pl->xmin, nrows = pl->ymax - pl->ymin;
    const taps *tx = &pl->tx, *ty = &pl->ty;
    const int kx = tx->ksize, ky = ty->ksize;
    /* rowf: one input row's needed columns as floats, RGB interleaved (3 * xw, plus zeros so
     * every padded tap and the 4th lane of the last pixel read something finite);
     * tmp: the horizontal pass (nrows, nx) as v4f, then one more row: the vertical pass's
     * accumulator */
    const size_t rowf_n = ((size_t)3 * (xw + kx) + 16 + 3) & ~(size_t)3;
    float *buf = aligned_alloc(16, sizeof(float) * (rowf_n + 4 * ((size_t)nrows + 1) * nx));
    uint8_t *luma = pl->nch == 1 ? malloc((size_t)3 * xw) : NULL;
    if (!buf || (pl->nch == 1 && !luma)) {
        free(buf);
        free(luma);
        return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory (resize buffer)");
    }
    float *rowf = buf;
    v4f *tmp = (v4f *)(buf + rowf_n);
    for (size_t i = (size_t)3 * xw; i < rowf_n; i++) rowf[i] = 0.f;
    const float *tw = tx->w;     /* (nx, kx): taps of output x, zero past its count */
    const int *off = pl->xoff;   /* (nx): first tap's column in rowf */
    const int nb = 3 * xw;
    for (int y = pl->ymin; y < pl->ymax; y++) {
        const uint8_t *row = src + (size_t)(y - ry0) * stride + (size_t)(xmin - rx0) * 3;
        if (luma) row = luma_row(luma, row, xw);
        /* bytes -> floats, 16 at a time */
        u8_to_f32(row, rowf, nb);
        /* four outputs at a time, each summing its taps in a register: four independent add
         * chains.  A pixel is an unaligned 4-float load (R, G, B and the next R, unused); taps
         * past an output's count have weight 0 and read the zero padding at worst. */
        v4f *t = tmp + (size_t)(y - pl->ymin) * nx;
        int x = 0;
        if (pl->wq) { /* AVX-512: whole groups of 4 outputs */
            hpass4_avx512(rowf, off, pl->wq, nx / 4, kx, (float *)t);
            x = nx / 4 * 4;
        }
        for (; x + 4 <= nx; x += 4) {
            const float *p0 = rowf + 3 * off[x], *p1 = rowf + 3 * off[x + 1];
            const float *p2 = rowf + 3 * off[x + 2], *p3 = rowf + 3 * off[x + 3];
            const float *w0 = tw + (size_t)x * kx, *w1 = w0 + kx, *w2 = w1 + kx, *w3 = w2 + kx;
            v4f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, q;
            for (int k = 0; k < kx; k++) {
                memcpy(&q, p0 + 3 * k, 16); a0 += w0[k] * q;
                memcpy(&q, p1 + 3 * k, 16); a1 += w1[k] * q;
                memcpy(&q, p2 + 3 * k, 16); a2 += w2[k] * q;
                memcpy(&q, p3 + 3 * k, 16); a3 += w3[k] * q;
            }
            t[x] = a0; t[x + 1] = a1; t[x + 2] = a2; t[x + 3] = a3;
        }
        for (; x < nx; x++) {
            const float *p0 = rowf + 3 * off[x], *w0 = tw + (size_t)x * kx;
            v4f a0 = {0}, q;
            for (int k = 0; k < kx; k++) { memcpy(&q, p0 + 3 * k, 16); a0 += w0[k] * q; }
            t[x] = a0;
        }
        if (pl->negative_lobes)
            for (x = 0; x < nx; x++) t[x] = clamp4(t[x]);
    }
    /* vertical pass on whole rows of tmp seen as flat floats (R, G, B, x per pixel): one long
     * vectorizable multiply-add per tap, then clamp, normalize and split into the planes */
    float *o0 = out, *o1 = out + plane, *o2 = out + 2 * plane;
    const float s0 = pl->scale[0], s1 = pl->scale[1], s2 = pl->scale[2];
    const float b0 = pl->bias[0], b1 = pl->bias[1], b2 = pl->bias[2];
    const size_t rw4 = (size_t)4 * nx;
    float *acc = (float *)(tmp + (size_t)nrows * nx);
    for (int i = 0; i < ny; i++) {
        const float *w = ty->w + (size_t)i * ky;
        const float *t0 = (const float *)(tmp + (size_t)(ty->lo[i] - pl->ymin) * nx);
        const int n = ty->n[i];
        row_scale(acc, t0, w[0], rw4);
        for (int k = 1; k < n; k++) row_axpy(acc, t0 + (size_t)k * rw4, w[k], rw4);
        const size_t os = (size_t)(pl->oy0 + i) * OW + pl->ox0;
        const v4f sc = {s0, s1, s2, 0.f}, bi = {b0, b1, b2, 0.f};
        for (int x = 0; x < nx; x++) {
            v4f px;
            memcpy(&px, acc + 4 * x, sizeof px);
            px = clamp4(px) * sc + bi;
            o0[os + x] = px[0];
            if (pl->nch == 1) continue;
            o1[os + x] = px[1];
            o2[os + x] = px[2];
        }
    }
    free(buf);
    free(luma);
    return VIT_OK;
}

vit_status vit_image_to_tensor(const vit_image *img, const vit_preprocess *pp, float *out,
                               char *err, size_t errlen) {
    if (!img || !img->rgb || img->width <= 0 || img->height <= 0 || !pp || !out)
        return vit_errf(VIT_E_ARG, err, errlen, "vit_image_to_tensor: missing image, settings or output");
    vit_pp_plan *pl;
    vit_status st = vit_pp_plan_make(pp, img->width, img->height, &pl, err, errlen);
    if (st) return st;
    st = vit_pp_plan_run(pl, img->rgb, (size_t)img->width * 3, 0, 0, img->width, img->height, out, err, errlen);
    vit_pp_plan_free(pl);
    return st;
}

/* vit_image_load's region callback: plan the resize for the decoded size, ask for its region */
typedef struct {
    const vit_preprocess *pp;
    vit_pp_plan *plan;
    vit_status st;
    char *err;
    size_t errlen;
} load_ctx;

static int load_region(void *ctx, int w, int h, int *x0, int *y0, int *x1, int *y1) {
    load_ctx *c = ctx;
    vit_pp_plan_free(c->plan);
    c->plan = NULL;
    c->st = vit_pp_plan_make(c->pp, w, h, &c->plan, c->err, c->errlen);
    if (c->st) return 0;
    vit_pp_plan_region(c->plan, x0, y0, x1, y1);
    return 1;
}

vit_status vit_image_load(const void *data, size_t len, const vit_preprocess *pp, uint64_t max_pixels,
                          float *out, char *err, size_t errlen) {
    vit_decode_limits lim = {.max_pixels = max_pixels};
    return vit_image_load_limited(data, len, pp, &lim, out, err, errlen);
}

vit_status vit_image_load_limited(const void *data, size_t len, const vit_preprocess *pp,
                                  const vit_decode_limits *lim, float *out, char *err, size_t errlen) {
    if (!pp || !out) return vit_errf(VIT_E_ARG, err, errlen, "vit_image_load: missing settings or output");
    uint64_t max_pixels = lim ? lim->max_pixels : 0;
    int min_w = 0, min_h = 0;
    if (pp->allow_dct_scaling && pp->do_resize) {
        /* the DCT-scaled image must stay at least as large as what the resize produces */
        if (pp->shortest_edge > 0) min_w = min_h = pp->shortest_edge;
        else min_w = min_h = pp->resize_w > pp->resize_h ? pp->resize_w : pp->resize_h;
    }
    load_ctx ctx = {.pp = pp, .err = err, .errlen = errlen};
    vit_decode_opts o = {.min_w = min_w, .min_h = min_h, .region = load_region, .ctx = &ctx, .lim = lim};
    vit_region_image r;
    vit_status st = vit_image_decode_region(data, len, max_pixels, &o, &r, err, errlen);
    if (st == VIT_OK && ctx.st) st = ctx.st;
    if (st == VIT_OK && (!ctx.plan || ctx.plan->W != r.full_w || ctx.plan->H != r.full_h)) {
        /* the decoder did not ask (or asked for another size): plan for what it produced */
        vit_pp_plan_free(ctx.plan);
        ctx.plan = NULL;
        st = vit_pp_plan_make(pp, r.full_w, r.full_h, &ctx.plan, err, errlen);
    }
    if (st == VIT_OK && lim && lim->cancelled && lim->cancelled(lim->ctx))
        st = vit_errf(VIT_E_CANCELLED, err, errlen, "cancelled before the resize");
    if (st == VIT_OK)
        st = vit_pp_plan_run(ctx.plan, r.img.rgb, (size_t)r.img.width * 3, r.x0, r.y0, r.img.width, r.img.height,
                             out, err, errlen);
    vit_pp_plan_free(ctx.plan);
    vit_image_free(&r.img);
    return st;
}
