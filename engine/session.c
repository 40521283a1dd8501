/* session.c: per-worker sessions and vit_forward.  Picks a backend from opts.device (AUTO:
 * CUDA when built in and a device is present, else the CPU), checks every argument of a
 * forward call, resolves the head, and dispatches through the vit_backend table; the input
 * buffers (vit_input_alloc, vit_session_input_buffer), pinned where the backend offers it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "knobs.h"
#include "util.h"

#define VIT_MAX_BATCH_LIMIT 4096
#define VIT_MAX_THREADS 256

static int cuda_available(void) {
#ifdef VIT_HAVE_CUDA
    return vit_cuda_device_count() > 0;
#else
    return 0;
#endif
}

/* opts (or the defaults) with max_batch, threads and precision checked; threads 0 = all cores */
static vit_status check_opts(const vit_session_opts *opts, vit_session_opts *o, char *err, size_t errlen) {
    *o = (vit_session_opts){.max_batch = 1, .threads = 0, .device = VIT_DEVICE_AUTO,
                            .precision = VIT_PREC_AUTO, .gpu_id = 0};
    if (opts) *o = *opts;
    if (o->max_batch < 1 || o->max_batch > VIT_MAX_BATCH_LIMIT)
        return vit_errf(VIT_E_ARG, err, errlen, "vit_session_new: max_batch %d not in [1, %d]",
                        o->max_batch, VIT_MAX_BATCH_LIMIT);
    if (o->threads < 0 || o->threads > VIT_MAX_THREADS)
        return vit_errf(VIT_E_ARG, err, errlen, "vit_session_new: threads %d not in [0, %d]",
                        o->threads, VIT_MAX_THREADS);
    if (o->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads = n < 1 ? 1 : n > VIT_MAX_THREADS ? VIT_MAX_THREADS : (int)n;
    }
    if (o->precision != VIT_PREC_AUTO && o->precision != VIT_PREC_FP32 &&
        o->precision != VIT_PREC_FP16 && o->precision != VIT_PREC_INT8 &&
        o->precision != VIT_PREC_FP8)
        return vit_errf(VIT_E_ARG, err, errlen, "vit_session_new: unknown precision %d",
                        (int)o->precision);
    return VIT_OK;
}

/* The backend for o->device, with o->device and o->precision resolved to what it runs
 * (AUTO: CUDA when built in and present, else the CPU in FP32 or INT8). */
static vit_status pick_backend(const vit_model *m, vit_session_opts *o, const vit_backend **out,
                               char *err, size_t errlen) {
    const vit_backend *be = NULL;
    switch (o->device) {
    case VIT_DEVICE_AUTO:
        if (o->precision == VIT_PREC_INT8) { /* int8 is CPU-only: AUTO means the CPU */
            be = &vit_backend_cpu;
            o->device = VIT_DEVICE_CPU;
        } else if (cuda_available()) {
#ifdef VIT_HAVE_CUDA
            be = &vit_backend_cuda;
            o->device = VIT_DEVICE_CUDA;
#endif
        } else {
            /* documented fallback: the CPU computes in FP32 whatever was asked */
            be = &vit_backend_cpu;
            o->device = VIT_DEVICE_CPU;
            o->precision = VIT_PREC_FP32;
        }
        break;
    case VIT_DEVICE_CPU:
        if (o->precision == VIT_PREC_FP16 || o->precision == VIT_PREC_FP8)
            return vit_errf(VIT_E_ARG, err, errlen,
                            "vit_session_new: precision %s needs the CUDA device; the CPU "
                            "backend computes in fp32 or int8", vit_precision_str(o->precision));
        be = &vit_backend_cpu;
        if (o->precision != VIT_PREC_INT8) o->precision = VIT_PREC_FP32;
        break;
    case VIT_DEVICE_CUDA:
        if ((o->precision == VIT_PREC_INT8 || o->precision == VIT_PREC_FP8) && !m->calib.amax)
            return vit_errf(VIT_E_ARG, err, errlen,
                            "vit_session_new: precision %s on cuda needs the model's activation "
                            "ranges, which it has not: run `vit calibrate --model DIR --data "
                            "IMAGES` (writes DIR/calibration.json), or use precision fp16",
                            vit_precision_str(o->precision));
#ifdef VIT_HAVE_CUDA
        if (!cuda_available())
            return vit_errf(VIT_E_DEVICE, err, errlen,
                            "vit_session_new: device cuda requested but no CUDA device is present");
        be = &vit_backend_cuda;
        break;
#else
        return vit_errf(VIT_E_DEVICE, err, errlen,
                        "vit_session_new: device cuda requested but this build has no CUDA "
                        "support (rebuild with nvcc available)");
#endif
    default:
        return vit_errf(VIT_E_ARG, err, errlen, "vit_session_new: unknown device %d", (int)o->device);
    }
    if (!be) return vit_errf(VIT_E_INTERNAL, err, errlen, "vit_session_new: no backend");
    if (o->device == VIT_DEVICE_CUDA) {
        if (o->precision == VIT_PREC_FP32)
            return vit_errf(VIT_E_ARG, err, errlen,
                            "vit_session_new: the CUDA backend computes in fp16 (fp32 accumulation); "
                            "fp32 runs on the CPU: use precision auto|fp16|int8|fp8, or device cpu");
        if (o->precision != VIT_PREC_INT8 && o->precision != VIT_PREC_FP8) o->precision = VIT_PREC_FP16;
    }
    *out = be;
    return VIT_OK;
}

/* floats of one preprocessed image (C, H, W) at the size the model runs at */
static size_t image_floats(const vit_config *c) {
    return (size_t)c->num_channels * (size_t)(c->grid_h * c->patch_size) * (size_t)(c->grid_w * c->patch_size);
}

vit_status vit_session_new(const vit_model *m, const vit_session_opts *opts, vit_session **out,
                           char *err, size_t errlen) {
    if (!out) return vit_errf(VIT_E_ARG, err, errlen, "vit_session_new: out is NULL");
    *out = NULL;
    if (!m) return vit_errf(VIT_E_ARG, err, errlen, "vit_session_new: model is NULL");
    vit_status kst = vit_knobs_load(err, errlen);   /* the backends read the knobs as they start */
    if (kst != VIT_OK) return kst;
    vit_session_opts o;
    const vit_backend *be = NULL;
    vit_status st = check_opts(opts, &o, err, errlen);
    if (st == VIT_OK) st = pick_backend(m, &o, &be, err, errlen);
    if (st != VIT_OK) return st;

    vit_session *s = calloc(1, sizeof *s);
    if (!s) return vit_errf(VIT_E_NOMEM, err, errlen, "vit_session_new: out of memory");
    s->model = m;
    s->opts = o;
    s->backend = be;
    if (!be->forward_f16) {   /* FP16 input converted to FP32 here for a backend that reads FP32 */
        const size_t img = image_floats(&m->cfg);
        if (img == 0 || (size_t)o.max_batch > SIZE_MAX / sizeof(float) / 64 / img ||
            !(s->f16_in = aligned_alloc(64, ((size_t)o.max_batch * img * sizeof(float) + 63) / 64 * 64))) {
            free(s);
            return vit_errf(VIT_E_NOMEM, err, errlen,
                            "vit_session_new: no memory for the FP16 input buffer (%d images)",
                            o.max_batch);
        }
    }
    char berr[256] = "";
    st = be->init(s, berr, sizeof berr);
    if (st != VIT_OK) {
        vit_errf(st, err, errlen, "vit_session_new (%s): %s", be->name, berr);
        be->free(s);
        free(s->f16_in);
        free(s);
        return st;
    }
    *out = s;
    return VIT_OK;
}

void vit_session_free(vit_session *s) {
    if (!s) return;
    if (s->backend) s->backend->free(s);
    free(s->f16_in);
    free(s);
}

const char *vit_session_errmsg(const vit_session *s) { return s ? s->errmsg : "no session"; }
vit_device vit_session_device(const vit_session *s) { return s ? s->opts.device : VIT_DEVICE_CPU; }
vit_precision vit_session_precision(const vit_session *s) {
    return s ? s->opts.precision : VIT_PREC_FP32;
}
const char *vit_precision_str(vit_precision p) {
    switch (p) {
    case VIT_PREC_AUTO: return "auto";
    case VIT_PREC_FP32: return "fp32";
    case VIT_PREC_FP16: return "fp16";
    case VIT_PREC_INT8: return "int8";
    case VIT_PREC_FP8: return "fp8";
    }
    return "?";
}

int vit_precision_parse(const char *s, vit_precision *out) {
    static const vit_precision all[] = {VIT_PREC_AUTO, VIT_PREC_FP32, VIT_PREC_FP16, VIT_PREC_INT8,
                                        VIT_PREC_FP8};
    for (size_t i = 0; s && i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(s, vit_precision_str(all[i]))) {
            *out = all[i];
            return 0;
        }
    return -1;
}

int vit_session_max_batch(const vit_session *s) { return s ? s->opts.max_batch : 0; }

/* the checks vit_forward and vit_forward_f16 share; resolves *head */
static vit_status check_forward(vit_session *s, const char *fn, const void *input, int B,
                                const vit_head **head, vit_outputs *out) {
    if (!s) return VIT_E_ARG;
    s->errmsg[0] = 0;
    if (!input || !out)
        return vit_errf(VIT_E_ARG, s->errmsg, sizeof s->errmsg, "%s: %s is NULL", fn,
                        input ? "out" : "input");
    if (B < 1 || B > s->opts.max_batch)
        return vit_errf(VIT_E_ARG, s->errmsg, sizeof s->errmsg,
                        "%s: batch %d not in [1, max_batch %d]", fn, B, s->opts.max_batch);
    const vit_config *c = &s->model->cfg;
    if (!*head) *head = s->model->head;
    if (out->logits) {
        if (!*head)
            return vit_errf(VIT_E_ARG, s->errmsg, sizeof s->errmsg,
                            "%s: logits requested but the model has no head", fn);
        if ((*head)->dim != c->feature_dim)
            return vit_errf(VIT_E_ARG, s->errmsg, sizeof s->errmsg,
                            "%s: head dim %d, model features are %d", fn, (*head)->dim,
                            c->feature_dim);
        if ((*head)->num_classes < 1)
            return vit_errf(VIT_E_ARG, s->errmsg, sizeof s->errmsg, "%s: head has no classes", fn);
    }
    return VIT_OK;
}

vit_status vit_forward(vit_session *s, const float *input, int B, const vit_head *head,
                       vit_outputs *out) {
    vit_status st = check_forward(s, "vit_forward", input, B, &head, out);
    if (st != VIT_OK) return st;
    return s->backend->forward(s, input, B, head, out);
}

vit_status vit_forward_f16(vit_session *s, const uint16_t *input, int B, const vit_head *head,
                           vit_outputs *out) {
    vit_status st = check_forward(s, "vit_forward_f16", input, B, &head, out);
    if (st != VIT_OK) return st;
    if (s->backend->forward_f16) return s->backend->forward_f16(s, input, B, head, out);
    const vit_config *c = &s->model->cfg;
    const size_t n = (size_t)B * c->num_channels * (size_t)(c->grid_h * c->patch_size) * (size_t)(c->grid_w * c->patch_size);
    vit_f16_to_f32(input, s->f16_in, n);
    return s->backend->forward(s, s->f16_in, B, head, out);
}

vit_input_type vit_session_input_type(const vit_session *s) {
    return s && s->backend && s->backend->forward_f16 ? VIT_INPUT_F16 : VIT_INPUT_F32;
}

/* ---- input buffers (any backend: pinned host memory where the backend offers it) ---------- */

float *vit_session_input_buffer(vit_session *s) {
    return s && s->backend && s->backend->input_buffer ? s->backend->input_buffer(s) : NULL;
}

float *vit_input_alloc(vit_session *s, int images) {
    if (!s || images < 1) return NULL;
    const size_t per = image_floats(&s->model->cfg);
    if ((size_t)images > SIZE_MAX / sizeof(float) / per) return NULL;
    size_t bytes = (size_t)images * per * sizeof(float);
    if (s->backend->host_alloc) {
        float *p = s->backend->host_alloc(bytes);
        if (p) return p;
        /* no page-locked memory to be had (ulimit -l, a small host): pageable memory still
         * works, the driver stages the copy; the backend's host_free tells the two apart */
    }
    bytes = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, bytes);
}

void vit_input_free(vit_session *s, float *p) {
    if (!p) return;
    if (s && s->backend->host_alloc) s->backend->host_free(p);
    else free(p);
}
