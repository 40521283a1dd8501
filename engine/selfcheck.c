/* selfcheck.c: vit_device_check (see vit.h): the same deterministic batch through a session as
 * configured and through a CPU FP32 session, compared.  A backend that computes garbage (a
 * layout bug, a broken driver, a kernel that never ran on this GPU) is caught before serving.
 *
 * Input: B = 2 smooth, image-like tensors (sums of low-frequency cosines per channel, values in
 * about [-2, 2] as after normalization), so attention is structured and logits spread out.
 * Compared: features (the pooled vector), logits when the model has a head, the CLS attention.
 * Error measure: max |dev - ref| / max(1, max |ref|) per output, against tol; top-1 must agree
 * on every image whose reference top-1/top-2 margin exceeds 2 tol x that scale. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vit.h"

#define CHECK_B 2

static double rel_err(const float *a, const float *ref, size_t n) {
    double scale = 1.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs((double)ref[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)ref[i]);
        if (!(d <= worst)) worst = d;              /* NaN propagates */
    }
    return worst / scale;
}

static int argmax2(const float *x, int n, double *margin) {
    int a = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[a]) a = i;
    double second = -INFINITY;
    for (int i = 0; i < n; i++) if (i != a && x[i] > second) second = x[i];
    *margin = n > 1 ? (double)x[a] - second : INFINITY;
    return a;
}

vit_status vit_device_check(const vit_model *m, const vit_session_opts *opts, double tol,
                            vit_check_result *res, char *err, size_t errlen) {
    memset(res, 0, sizeof *res);
    if (!m || !opts || !(tol > 0)) return vit_errf(VIT_E_ARG, err, errlen, "vit_device_check: bad argument");
    const vit_config *c = vit_model_config(m);
    const vit_head *head = vit_model_head(m);
    const int S = c->grid_h * c->patch_size, SW = c->grid_w * c->patch_size, F = c->feature_dim, P = c->num_patches, CH = c->num_channels;
    const int K = head ? vit_head_num_classes(head) : 0;
    const size_t per = (size_t)CH * S * SW;
    size_t nfloats = CHECK_B * (per + 2 * ((size_t)F + (size_t)K + (size_t)P));
    float *buf = malloc(nfloats * sizeof *buf);
    if (!buf) return vit_errf(VIT_E_NOMEM, err, errlen, "vit_device_check: out of memory");
    float *x = buf, *o = x + CHECK_B * per;
    float *feat[2], *logit[2], *attn[2];
    for (int k = 0; k < 2; k++) {
        feat[k] = o; o += CHECK_B * (size_t)F;
        logit[k] = o; o += CHECK_B * (size_t)K;
        attn[k] = o; o += CHECK_B * (size_t)P;
    }
    for (int b = 0; b < CHECK_B; b++)
        for (int ch = 0; ch < CH; ch++)
            for (int i = 0; i < S; i++)
                for (int j = 0; j < SW; j++) {
                    double u = (double)i / S, v = (double)j / SW;
                    double val = 1.2 * cos(6.2832 * ((1 + b + ch) * u + 0.5 * v) + ch) +
                                 0.6 * cos(6.2832 * (2 * v - (b + 1) * u)) - 0.2 * ch + 0.3 * b;
                    x[(size_t)b * per + ((size_t)ch * S + i) * SW + j] = (float)val;
                }

    vit_session_opts ref_opts = {.max_batch = CHECK_B, .threads = opts->threads, .device = VIT_DEVICE_CPU,
                                 .precision = VIT_PREC_FP32, .gpu_id = 0};
    vit_session_opts dev_opts = *opts;
    if (dev_opts.max_batch < CHECK_B) dev_opts.max_batch = CHECK_B;
    vit_status st = VIT_OK;
    for (int k = 0; k < 2 && st == VIT_OK; k++) {
        vit_session *s = NULL;
        st = vit_session_new(m, k ? &ref_opts : &dev_opts, &s, err, errlen);
        if (st != VIT_OK) break;
        if (k == 0) {
            res->device = vit_session_device(s);
            res->precision = vit_session_precision(s);
        }
        vit_outputs out = {.logits = K ? logit[k] : NULL, .features = feat[k], .attn_cls = attn[k]};
        st = vit_forward(s, x, CHECK_B, NULL, &out);
        if (st != VIT_OK)
            vit_errf(st, err, errlen, "%s forward: %s", k ? "CPU reference" : "checked", vit_session_errmsg(s));
        vit_session_free(s);
    }
    if (st == VIT_OK) {
        res->features_err = rel_err(feat[0], feat[1], CHECK_B * (size_t)F);
        res->logits_err = K ? rel_err(logit[0], logit[1], CHECK_B * (size_t)K) : 0.0;
        res->attn_err = rel_err(attn[0], attn[1], CHECK_B * (size_t)P);
        res->top1_agree = 1;
        for (int b = 0; b < CHECK_B && K; b++) {
            double scale = 1.0, margin, unused;
            for (int i = 0; i < K; i++) scale = fmax(scale, fabs((double)logit[1][(size_t)b * K + i]));
            int r = argmax2(logit[1] + (size_t)b * K, K, &margin);
            int d = argmax2(logit[0] + (size_t)b * K, K, &unused);
            if (r != d && margin > 2 * tol * scale) res->top1_agree = 0;
        }
        double worst = fmax(res->features_err, fmax(res->logits_err, res->attn_err));
        if (!(worst <= tol) || !res->top1_agree)
            st = vit_errf(VIT_E_BACKEND, err, errlen,
                          "device check failed: %s/%s differs from the CPU FP32 reference "
                          "(relative error: features %.3g, logits %.3g, attention %.3g; tolerance %.3g; top-1 %s)",
                          res->device == VIT_DEVICE_CUDA ? "cuda" : "cpu", vit_precision_str(res->precision),
                          res->features_err, res->logits_err, res->attn_err, tol,
                          res->top1_agree ? "agrees" : "differs");
    }
    free(buf);
    return st;
}
