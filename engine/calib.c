/* calib.c: the calibrator behind `vit calibrate`: images through a CPU FP32 session whose
 * forward reports the input of every block's qkv, proj, fc1 and fc2 (vit_session.observe), a
 * histogram of |x| per tensor, and the clipping range per tensor by the chosen method, written as
 * calibration.json (engine/io/calib_io.h).
 *
 * Histogram: CAL_OCT octaves of |x| from 2^CAL_EMIN, CAL_SUB log-spaced bins per octave (bin
 * width 1.1% of its value), one bin below (zeros and tiny values) and one above; plus the exact
 * max.  Counts are integers and the max is order-free, so the result is the same whatever the
 * batch split and thread count (the observer runs under a mutex when the forward runs
 * image-parallel).
 * Methods (amax = the clipping range, INT8 scale amax / 127):
 * - minmax: the exact max of |x|.
 * - percentile: the upper edge of the bin holding the 99.99th percentile (at most the max).
 * - mse: among the bin edges from the 99th percentile up to the max, the one minimizing the
 *   expected squared INT8 error of the histogram: values below the range get the rounding noise
 *   (amax / 127)^2 / 12, values above it (v - amax)^2 with v the bin's centre. */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "util.h"

#define CAL_EMIN (-24)
#define CAL_OCT 48
#define CAL_SUB 64
#define CAL_BINS (CAL_OCT * CAL_SUB + 2)   /* [0]: below 2^EMIN, [last]: at or above 2^(EMIN+OCT) */

typedef struct {
    uint64_t n[CAL_BINS];
    uint64_t total;
    float max;
} cal_hist;

struct vit_calibrator {
    const vit_model *model;
    vit_session *sess;
    vit_calib_method method;
    int ntensors, images;
    cal_hist *h;                   /* (num_layers, 4) */
    pthread_mutex_t mu;
};

static int bin_of(float a) {
    if (!(a >= ldexpf(1.f, CAL_EMIN))) return 0;
    int e;
    float f = frexpf(a, &e);       /* a = f 2^e, f in [0.5, 1) */
    int oct = e - 1 - CAL_EMIN;
    if (oct >= CAL_OCT) return CAL_BINS - 1;
    int sub = (int)((2.f * f - 1.f) * CAL_SUB);
    if (sub >= CAL_SUB) sub = CAL_SUB - 1;
    return 1 + oct * CAL_SUB + sub;
}

/* lower edge of bin b (1 <= b <= CAL_BINS - 1) */
static double bin_lo(int b) {
    if (b >= CAL_BINS - 1) return ldexp(1.0, CAL_EMIN + CAL_OCT);
    int oct = (b - 1) / CAL_SUB, sub = (b - 1) % CAL_SUB;
    return ldexp(1.0 + (double)sub / CAL_SUB, CAL_EMIN + oct);
}

static void observe(void *ctx, int layer, int linear, const float *X, int rows, int K) {
    vit_calibrator *c = ctx;
    cal_hist *h = &c->h[layer * VIT_CALIB_LINEARS + linear];
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0, n = (size_t)rows * K; i < n; i++) {
        float a = fabsf(X[i]);
        if (!isfinite(a)) continue;
        h->n[bin_of(a)]++;
        h->total++;
        if (a > h->max) h->max = a;
    }
    pthread_mutex_unlock(&c->mu);
}

vit_status vit_calibrator_new(const vit_model *m, vit_calib_method method, int max_batch,
                              int threads, vit_calibrator **out, char *err, size_t errlen) {
    if (!out) return vit_errf(VIT_E_ARG, err, errlen, "vit_calibrator_new: out is NULL");
    *out = NULL;
    if (!m) return vit_errf(VIT_E_ARG, err, errlen, "vit_calibrator_new: model is NULL");
    if ((unsigned)method > VIT_CALIB_MSE)
        return vit_errf(VIT_E_ARG, err, errlen, "vit_calibrator_new: unknown method %d", (int)method);
    const int L = m->cfg.num_layers;
    if (L < 1 || L > VIT_CALIB_MAX_LAYERS)
        return vit_errf(VIT_E_ARG, err, errlen, "vit_calibrator_new: %d layers, not in [1, %d]", L,
                        VIT_CALIB_MAX_LAYERS);
    vit_calibrator *c = calloc(1, sizeof *c);
    if (!c || !(c->h = calloc((size_t)L * VIT_CALIB_LINEARS, sizeof *c->h))) {
        free(c);
        return vit_errf(VIT_E_NOMEM, err, errlen, "vit_calibrator_new: out of memory");
    }
    c->model = m;
    c->method = method;
    c->ntensors = L * VIT_CALIB_LINEARS;
    pthread_mutex_init(&c->mu, NULL);
    vit_session_opts so = {.max_batch = max_batch, .threads = threads, .device = VIT_DEVICE_CPU,
                           .precision = VIT_PREC_FP32};
    vit_status st = vit_session_new(m, &so, &c->sess, err, errlen);
    if (st != VIT_OK) {
        vit_calibrator_free(c);
        return st;
    }
    c->sess->observe = observe;
    c->sess->observe_ctx = c;
    *out = c;
    return VIT_OK;
}

vit_status vit_calibrator_add(vit_calibrator *c, const float *images, int B, char *err,
                              size_t errlen) {
    if (!c || !images) return vit_errf(VIT_E_ARG, err, errlen, "vit_calibrator_add: NULL argument");
    vit_outputs out = {0};   /* the backbone alone: the observer sees every Linear's input */
    vit_status st = vit_forward(c->sess, images, B, NULL, &out);
    if (st != VIT_OK)
        return vit_errf(st, err, errlen, "vit_calibrator_add: %s", vit_session_errmsg(c->sess));
    c->images += B;
    return VIT_OK;
}

static float percentile_edge(const cal_hist *h, double p) {
    uint64_t want = (uint64_t)ceil(p * (double)h->total), cum = 0;
    for (int b = 0; b < CAL_BINS; b++) {
        cum += h->n[b];
        if (cum >= want && cum > 0) {
            double hi = b + 1 < CAL_BINS ? bin_lo(b + 1) : h->max;
            return hi < h->max ? (float)hi : h->max;
        }
    }
    return h->max;
}

static float mse_range(const cal_hist *h) {
    /* suffix sums over bins >= b of n, n v, n v^2 (v the bin centre, the max for the last) */
    double *s0 = malloc(sizeof(double) * 3 * (CAL_BINS + 1));
    if (!s0) return h->max;
    double *s1 = s0 + CAL_BINS + 1, *s2 = s1 + CAL_BINS + 1;
    s0[CAL_BINS] = s1[CAL_BINS] = s2[CAL_BINS] = 0;
    for (int b = CAL_BINS - 1; b >= 0; b--) {
        double v = b == 0 ? 0.0 : b == CAL_BINS - 1 ? h->max : 0.5 * (bin_lo(b) + bin_lo(b + 1));
        double n = (double)h->n[b];
        s0[b] = s0[b + 1] + n;
        s1[b] = s1[b + 1] + n * v;
        s2[b] = s2[b + 1] + n * v * v;
    }
    float lo = percentile_edge(h, 0.99), best = h->max;
    double best_err = INFINITY;
    for (int b = bin_of(lo) + 1; b <= CAL_BINS; b++) {
        double c = b < CAL_BINS ? bin_lo(b) : h->max;
        if (c > h->max) c = h->max;
        if (!(c > 0)) continue;
        double below = s0[0] - s0[b < CAL_BINS ? b : CAL_BINS];
        double q = c / 127.0, e = below * q * q / 12.0;
        if (b < CAL_BINS) e += s2[b] - 2.0 * c * s1[b] + c * c * s0[b];
        if (e < best_err) {
            best_err = e;
            best = (float)c;
        }
        if (c >= h->max) break;
    }
    free(s0);
    return best;
}

static float range_of(const cal_hist *h, vit_calib_method method) {
    if (!(h->max > 0.f)) return 1e-30f;   /* an all-zero input: any positive range */
    switch (method) {
    case VIT_CALIB_PERCENTILE: return percentile_edge(h, 0.9999);
    case VIT_CALIB_MSE: return mse_range(h);
    default: return h->max;
    }
}

vit_status vit_calibrator_write(vit_calibrator *c, const char *path, char *err, size_t errlen) {
    if (!c || !path) return vit_errf(VIT_E_ARG, err, errlen, "vit_calibrator_write: NULL argument");
    if (c->images < 1) return vit_errf(VIT_E_ARG, err, errlen, "vit_calibrator_write: no images added");
    const vit_config *cfg = &c->model->cfg;
    vit_calib k = {.num_layers = cfg->num_layers, .hidden_size = cfg->hidden_size,
                   .mlp_size = cfg->mlp_size, .samples = c->images, .method = c->method};
    k.amax = malloc(sizeof(float) * (size_t)c->ntensors);
    if (!k.amax) return vit_errf(VIT_E_NOMEM, err, errlen, "vit_calibrator_write: out of memory");
    for (int i = 0; i < c->ntensors; i++) k.amax[i] = range_of(&c->h[i], c->method);
    char *text = vit_calib_to_json(&k);
    free(k.amax);
    if (!text) return vit_errf(VIT_E_NOMEM, err, errlen, "vit_calibrator_write: out of memory");
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    vit_status st = VIT_OK;
    if (!f) {
        st = vit_errf(VIT_E_IO, err, errlen, "%s: cannot write", tmp);
    } else {
        size_t n = strlen(text);
        int bad = fwrite(text, 1, n, f) != n;
        bad |= fclose(f) != 0;
        if (bad || rename(tmp, path) != 0) {
            remove(tmp);
            st = vit_errf(VIT_E_IO, err, errlen, "%s: cannot write", path);
        }
    }
    free(text);
    return st;
}

void vit_calibrator_free(vit_calibrator *c) {
    if (!c) return;
    vit_session_free(c->sess);
    pthread_mutex_destroy(&c->mu);
    free(c->h);
    free(c);
}
