/* cuda_backend.c: the CUDA backend's entry in the backend table (vit_backend_cuda),
 * vit_cuda_device_count() and vit_cuda_device_info().  C glue only: it reads
 * struct vit_model / struct vit_head (model.h) and hands plain pointer structs to
 * cuda_engine.cu, which does the work.  Without CUDA (VIT_HAVE_CUDA undefined) the device
 * functions answer "none". */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "util.h"

#ifdef VIT_HAVE_CUDA
#include "cuda/cuda_engine.h"

vit_status vit_cuda_device_info(int gpu_id, char *name, size_t namelen, size_t *mem_total,
                                size_t *mem_free) {
    if (vcu_device_info(gpu_id, name, namelen, mem_total, mem_free) != 0)
        return VIT_E_DEVICE;
    return VIT_OK;
}

int vit_cuda_device_count(void) { return vcu_device_count(); }

static vit_status cuda_init(vit_session *s, char *err, size_t errlen) {
    const vit_model *mo = s->model;
    const vit_config *c = &mo->cfg;
    /* FP16 (FP32 accumulation), or INT8 / FP8 in the encoder Linears: vit_session_new resolved
     * AUTO to FP16, refused FP32, and INT8 / FP8 without the model's calibration */
    const int prec = s->opts.precision == VIT_PREC_INT8 ? VCU_INT8
                     : s->opts.precision == VIT_PREC_FP8 ? VCU_FP8 : VCU_FP16;
    if (prec == VCU_FP16) s->opts.precision = VIT_PREC_FP16;
    vcu_layer *layers = calloc(c->num_layers > 0 ? (size_t)c->num_layers : 1, sizeof *layers);
    if (!layers) {
        if (err && errlen) snprintf(err, errlen, "cuda: out of memory");
        return VIT_E_NOMEM;
    }
    for (int l = 0; l < c->num_layers; l++) {
        const vit_layer_weights *w = &mo->layers[l];
        layers[l] = (vcu_layer){w->ln1_w, w->ln1_b, w->qkv_w, w->qkv_b, w->proj_w, w->proj_b,
                                w->ln2_w, w->ln2_b, w->fc1_w, w->fc1_b, w->fc2_w, w->fc2_b};
    }
    /* the input is (C, grid_h * P, grid_w * P), as the session sizes it (vit_session_new); a
     * non-square one (grid_h != grid_w) and [cls; mean] pooling run as on the CPU */
    vcu_model_desc d = {
        .image_h = c->grid_h * c->patch_size, .image_w = c->grid_w * c->patch_size,
        .patch_size = c->patch_size, .channels = c->num_channels,
        .D = c->hidden_size, .L = c->num_layers, .H = c->num_heads, .M = c->mlp_size,
        .grid_h = c->grid_h, .grid_w = c->grid_w, .Np = c->num_patches,
        .npf = c->num_prefix_tokens, .T = c->num_tokens,
        .pooling = (int)c->pooling, .feature_dim = c->feature_dim,
        .eps = c->layer_norm_eps,
        .patch_w = mo->patch_w, .patch_b = mo->patch_b,
        .cls_token = mo->cls_token, .dist_token = mo->dist_token, .pos_embed = mo->pos_embed,
        .reg_tokens = mo->reg_tokens, .nreg = c->num_register_tokens,
        .norm_w = mo->norm_w, .norm_b = mo->norm_b,
        .fc_norm_w = mo->fc_norm_w, .fc_norm_b = mo->fc_norm_b,
        .pre_logits_w = c->has_pre_logits ? mo->pre_logits_w : NULL,
        .pre_logits_b = c->has_pre_logits ? mo->pre_logits_b : NULL,
        .layers = layers,
        .precision = prec, .act_amax = mo->calib.amax,
    };
    vit_status st = vcu_init(&s->state, &d, s->opts.max_batch, s->opts.gpu_id, err, errlen);
    free(layers);
    return st;
}

/* FNV-1a over the head's shape, its biases and 64 weights spread over the matrix: tells a new
 * head from a freed one whose address was reused, without reading all C x D weights */
static uint64_t head_fingerprint(const vit_head *h) {
    uint64_t x = 1469598103934665603ull;
#define MIX(v) do { x ^= (uint64_t)(v); x *= 1099511628211ull; } while (0)
    MIX(h->num_classes);
    MIX(h->dim);
    uint32_t u;
    for (int i = 0; i < h->num_classes; i++) { memcpy(&u, &h->b[i], 4); MIX(u); }
    size_t n = (size_t)h->num_classes * h->dim;
    for (int i = 0; i < 64; i++) { memcpy(&u, &h->w[(size_t)i * (n - 1) / 63], 4); MIX(u); }
#undef MIX
    return x;
}

static vit_status cuda_run(vit_session *s, const void *input, vit_input_type type, int B,
                           const vit_head *head, vit_outputs *out) {
    vcu_head_desc hd = {0};
    if ((out->attn_cls || out->attn_rollout) && !s->model->cls_token)   /* as the CPU backend */
        return vit_errf(VIT_E_ARG, s->errmsg, sizeof s->errmsg, "attention maps need a class token; this model has none");
    if (head) {
        hd.key = head;
        hd.fingerprint = head_fingerprint(head);
        hd.C = head->num_classes;
        hd.dim = head->dim;
        hd.w = head->w;
        hd.b = head->b;
    }
    vcu_outputs o = {out->logits, out->features, out->attn_cls, out->attn_rollout};
    return vcu_forward(s->state, input, type, B, head ? &hd : NULL, &o, s->errmsg,
                       sizeof s->errmsg);
}

static vit_status cuda_forward(vit_session *s, const float *input, int B, const vit_head *head,
                               vit_outputs *out) {
    return cuda_run(s, input, VIT_INPUT_F32, B, head, out);
}

/* FP16 input goes to the GPU as is: half the bytes, and im2col reads it without rounding */
static vit_status cuda_forward_f16(vit_session *s, const uint16_t *input, int B,
                                   const vit_head *head, vit_outputs *out) {
    return cuda_run(s, input, VIT_INPUT_F16, B, head, out);
}

static float *cuda_input_buffer(vit_session *s) { return vcu_input_buffer(s->state); }

static void cuda_free(vit_session *s) {
    vcu_free(s->state);
    s->state = NULL;
}

const vit_backend vit_backend_cuda = {
    .name = "cuda",
    .init = cuda_init,
    .forward = cuda_forward,
    .forward_f16 = cuda_forward_f16,
    .free = cuda_free,
    .input_buffer = cuda_input_buffer,
    .host_alloc = vcu_host_alloc,
    .host_free = vcu_host_free,
};

#else
vit_status vit_cuda_device_info(int gpu_id, char *name, size_t namelen, size_t *mem_total,
                                size_t *mem_free) {
    (void)gpu_id;
    if (name && namelen) snprintf(name, namelen, "none (built without CUDA)");
    if (mem_total) *mem_total = 0;
    if (mem_free) *mem_free = 0;
    return VIT_E_DEVICE;
}
#endif
