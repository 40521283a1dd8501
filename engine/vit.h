/* vit.h: public API of the vitd engine, a Vision Transformer (Dosovitskiy et al. 2020)
 * for image classification: checkpoint loading, JPEG/PNG decoding and preprocessing,
 * the forward pass (CPU FP32 always; CUDA FP16 when built with it), and head training.
 *
 * Ownership and threads
 *   vit_model    loaded once, read-only after vit_model_load returns; share it between any
 *                number of threads and sessions.  Free it after every session using it.
 *   vit_session  per-worker scratch sized for its max batch; use from one thread at a time.
 *                It keeps the detailed message of its last error (vit_session_errmsg).
 *   vit_head     a classification head (linear, C x D, plus labels), reference counted and
 *                immutable once made; retain/release are thread-safe.  A batch holds a
 *                reference while it runs, so a head can be swapped while batches are in flight.
 *   Functions that can fail return vit_status; where there is no handle yet they write a
 *   one-line detail into the caller's err buffer (may be NULL).  vit_*_free(NULL) is harmless.
 *   The engine never prints and never exits.
 *
 * Usage
 *   char err[256];
 *   vit_model *m;  vit_session *s;
 *   if (vit_model_load("models/fashion-vit", NULL, &m, err, sizeof err)) { puts(err); ... }
 *   const vit_config *c = vit_model_config(m);
 *   vit_session_opts so = { .max_batch = 8, .threads = 0, .device = VIT_DEVICE_CPU };
 *   vit_session_new(m, &so, &s, err, sizeof err);
 *   float *x = malloc(sizeof(float) * 3 * c->image_size * c->image_size);     // (1,3,H,W)
 *   vit_image_load(bytes, nbytes, &c->preprocess, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err);
 *   float logits[c->num_classes];
 *   vit_outputs out = { .logits = logits };
 *   vit_forward(s, x, 1, NULL, &out);
 */
#ifndef VIT_H
#define VIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status ------------------------------------------------------------------------ */

typedef enum vit_status {
    VIT_OK = 0,
    VIT_E_ARG,             /* invalid argument */
    VIT_E_NOMEM,           /* out of memory */
    VIT_E_IO,              /* a file cannot be opened or read */
    VIT_E_CONFIG,          /* config.json / preprocessor_config.json invalid */
    VIT_E_CHECKPOINT,      /* model.safetensors corrupt, truncated, missing tensor, bad shape/dtype */
    VIT_E_IMAGE_FORMAT,    /* unsupported image format (not JPEG or PNG)      -> HTTP 415 */
    VIT_E_IMAGE_TOO_LARGE, /* header's pixel count above the cap              -> HTTP 413 */
    VIT_E_IMAGE_CORRUPT,   /* empty, truncated or corrupt image               -> HTTP 400 */
    VIT_E_IMAGE_COST,      /* decode cost (vit_decode_limits) over its budget  -> HTTP 413 */
    VIT_E_IMAGE_POLICY,    /* refused by a decoding policy (JPEG scan count)  -> HTTP 422 */
    VIT_E_DEVICE,          /* requested device not available (e.g. --device cuda, no GPU) */
    VIT_E_BACKEND,         /* backend runtime failure (CUDA error) */
    VIT_E_CANCELLED,       /* operation cancelled (head training job) */
    VIT_E_INTERNAL,
    VIT_STATUS_COUNT
} vit_status;

/* A fixed string per status ("ok", "invalid argument", "unsupported image format", ...). */
const char *vit_status_str(vit_status s);

/* ---- configuration ----------------------------------------------------------------- */

/* CLS: the class token; MEAN: the mean of the patch tokens; CLS_MEAN: [class token; mean of the
 * patch tokens] (2D wide, DINOv2's linear classifier), both after the final LayerNorm */
typedef enum { VIT_POOL_CLS = 0, VIT_POOL_MEAN = 1, VIT_POOL_CLS_MEAN = 2 } vit_pooling;
typedef enum { VIT_DEVICE_AUTO = 0, VIT_DEVICE_CPU = 1, VIT_DEVICE_CUDA = 2 } vit_device;
/* AUTO (the zero value): FP32 on the CPU, FP16 on CUDA.  The CPU computes FP32, or INT8 (W8A8
 * of the encoder's Linear layers, the rest FP32; see engine/cpu/cpu_gemm_i8.c): with dynamic
 * per-token activation scales, or, when the model directory holds a calibration
 * (calibration.json, `vit calibrate`), the calibrated per-tensor scales, the same arithmetic as
 * the CUDA INT8 path.  CUDA computes FP16 (FP32 accumulation), or INT8 / FP8 (E4M3, sm_89+) in
 * the encoder's Linear layers, which need the calibration.  Any other pairing is VIT_E_ARG. */
typedef enum {
    VIT_PREC_AUTO = 0, VIT_PREC_FP32 = 1, VIT_PREC_FP16 = 2, VIT_PREC_INT8 = 3, VIT_PREC_FP8 = 4
} vit_precision;
/* "auto", "fp32", "fp16", "int8", "fp8" ("?" for a value out of range) */
const char *vit_precision_str(vit_precision p);
/* the inverse of vit_precision_str for the five names; 0, or -1 for anything else */
int vit_precision_parse(const char *s, vit_precision *out);
/* PIL resampling codes, as Hugging Face's preprocessor_config.json stores them */
typedef enum { VIT_RESAMPLE_NEAREST = 0, VIT_RESAMPLE_BILINEAR = 2, VIT_RESAMPLE_BICUBIC = 3 } vit_resample;

#define VIT_DEFAULT_MAX_PIXELS 50000000ull
#define VIT_DEFAULT_MAX_SCANS 100       /* JPEG scans (SOS markers) per image */

/* How raw pixels become the (3, out_h, out_w) input tensor (HF / timm / torchvision semantics):
 * resize (shortest edge, or to h x w), center crop, x * rescale_factor, (x - mean) / std. */
typedef struct vit_preprocess {
    int do_resize;
    int shortest_edge;       /* > 0: scale so the shorter side is this (torchvision Resize(int)) */
    int resize_h, resize_w;  /* used when shortest_edge == 0 */
    int resample;            /* vit_resample */
    int do_center_crop;
    int crop_h, crop_w;
    int do_rescale;
    float rescale_factor;    /* usually 1/255 */
    int do_normalize;
    float mean[3], std[3];
    int out_h, out_w;        /* size of the tensor this produces */
    int allow_dct_scaling;   /* 1: JPEG may be downscaled in the DCT domain when >= 2x target (fast mode) */
    int pil_exact;           /* 1: resize in PIL's 8-bit fixed point (rounded after each pass), so the
                                tensor equals PIL + torchvision's bit for bit; 0 (default): float */
    int crop_floor;          /* 0: torchvision's offsets round((h - ch) / 2) (timm, torchvision); 1: Hugging
                                Face's floor((h - ch) / 2) (preprocessor_config.json naming its class) */
    int channels;            /* planes of the tensor: 3 (RGB) or 1 (luminance as PIL's convert("L"),
                                computed after alpha is composited); 0 means 3 */
} vit_preprocess;

typedef struct vit_config {
    char architecture[64];   /* "ViTForImageClassification", "vit_base_patch16_224", "vit_b_16", ... */
    char naming[16];         /* tensor naming scheme found: "hf", "timm" or "torchvision" */
    int image_size;          /* input size this model runs at (may differ from trained); the height
                                when the input is not square (image_h x image_w, below) */
    int trained_image_size;  /* size the position embeddings were trained for (height if not square) */
    int patch_size;
    int num_channels;        /* 3 (RGB) or 1 (grayscale: the input is PIL's convert("L") luminance) */
    int hidden_size;         /* D */
    int num_layers;
    int num_heads;
    int mlp_size;            /* intermediate size */
    int grid_h, grid_w;      /* patches per side at image_size */
    int num_patches;         /* grid_h * grid_w */
    int num_prefix_tokens;   /* class token (0 or 1) + DeiT distillation token (0 or 1) + registers */
    int num_tokens;          /* num_prefix_tokens + num_patches */
    float layer_norm_eps;
    int qkv_bias;
    vit_pooling pooling;
    int has_pre_logits;      /* timm in21k representation layer: tanh(fc(x)) */
    int distilled;           /* DeiT: features are [cls; dist], head averages the two */
    int feature_dim;         /* size of the pooled representation that feeds the head */
    int num_classes;         /* rows of the checkpoint's own head */
    char **labels;           /* num_classes strings */
    vit_preprocess preprocess;
    size_t num_params;
    int num_register_tokens; /* timm reg_token: learned tokens after the class token, 0..VIT_MAX_REGISTERS */
    int layer_scale;         /* 1: LayerScale (timm ls1/ls2.gamma), folded into proj and fc2 at load */
    int image_h, image_w;    /* the input (C, image_h, image_w) this model runs at: grid_h/w * patch */
    int trained_image_h, trained_image_w; /* what the position embeddings were trained for */
} vit_config;

#define VIT_MAX_REGISTERS 16

/* ---- model ------------------------------------------------------------------------- */

typedef struct vit_model vit_model;

typedef struct vit_load_opts {
    int image_size;          /* 0: as trained; otherwise run at this size, position embeddings
                                interpolated bicubically as timm does */
} vit_load_opts;

/* Load a model directory: config.json + model.safetensors (+ preprocessor_config.json).
 * Every tensor's name, dtype, shape and byte range is validated; errors name the tensor,
 * the expected and the actual shape.  opts may be NULL. */
vit_status vit_model_load(const char *dir, const vit_load_opts *opts, vit_model **out,
                          char *err, size_t errlen);
void vit_model_free(vit_model *m);
const vit_config *vit_model_config(const vit_model *m);
/* 1 when the model directory held a calibration (calibration.json) and it was loaded */
int vit_model_calibrated(const vit_model *m);

/* ---- calibration (INT8 / FP8 activation ranges) ------------------------------------ */

/* how a tensor's clipping range is chosen from the |x| seen on the calibration images:
 * MINMAX the largest, PERCENTILE the 99.99th percentile, MSE the range that minimizes the INT8
 * quantization error of the observed distribution */
typedef enum { VIT_CALIB_MINMAX = 0, VIT_CALIB_PERCENTILE = 1, VIT_CALIB_MSE = 2 } vit_calib_method;
const char *vit_calib_method_str(vit_calib_method m);   /* "minmax", "percentile", "mse" */
int vit_calib_method_parse(const char *s, vit_calib_method *out);   /* 0, or -1 */

/* A calibrator runs images through the CPU FP32 forward and records the inputs of every block's
 * qkv, proj, fc1 and fc2 (histograms of |x|, so the result does not depend on batch split or
 * thread count).  One thread at a time per calibrator. */
typedef struct vit_calibrator vit_calibrator;
vit_status vit_calibrator_new(const vit_model *m, vit_calib_method method, int max_batch,
                              int threads, vit_calibrator **out, char *err, size_t errlen);
/* B <= max_batch preprocessed images (B, 3, image_size, image_size) FP32 */
vit_status vit_calibrator_add(vit_calibrator *c, const float *images, int B, char *err,
                              size_t errlen);
/* write the calibration file (calibration.json format) to path; at least one image added */
vit_status vit_calibrator_write(vit_calibrator *c, const char *path, char *err, size_t errlen);
void vit_calibrator_free(vit_calibrator *c);

/* ---- heads ------------------------------------------------------------------------- */

typedef struct vit_head vit_head;

/* A new linear head: w is (num_classes, dim), b is (num_classes); data and labels are copied.
 * Returned with one reference. */
vit_status vit_head_new(int num_classes, int dim, const float *w, const float *b,
                        const char *const *labels, vit_head **out);
/* The checkpoint's own head (owned by the model; retain it to keep it past the model). */
vit_head *vit_model_head(const vit_model *m);
void vit_head_retain(vit_head *h);
void vit_head_release(vit_head *h);        /* frees at zero; NULL harmless */
int vit_head_num_classes(const vit_head *h);
int vit_head_dim(const vit_head *h);
const char *vit_head_label(const vit_head *h, int i);
const float *vit_head_weight(const vit_head *h);  /* (num_classes, dim) */
const float *vit_head_bias(const vit_head *h);    /* (num_classes) */

/* ---- sessions and the forward pass ------------------------------------------------- */

typedef struct vit_session vit_session;

typedef struct vit_session_opts {
    int max_batch;           /* >= 1; every buffer is sized for it once */
    int threads;             /* CPU threads; 0 = all cores */
    vit_device device;       /* AUTO: CUDA if built and a device is present, else CPU */
    vit_precision precision; /* AUTO: FP32 on the CPU, FP16 on CUDA */
    int gpu_id;
} vit_session_opts;

/* opts NULL: max_batch 1, all cores, device and precision AUTO.  Device CUDA when not built in
 * or no GPU is present -> VIT_E_DEVICE.  Precision FP16 or FP8 on the CPU, FP32 on CUDA, or
 * INT8 / FP8 on CUDA for a model without calibration -> VIT_E_ARG; except that device AUTO landing on the CPU (no GPU) computes in
 * FP32 whatever was asked (INT8 excepted), so one configuration runs everywhere
 * (vit_session_precision says what runs).  Precision INT8 with device AUTO runs on the CPU
 * even when a GPU is present. */
vit_status vit_session_new(const vit_model *m, const vit_session_opts *opts, vit_session **out,
                           char *err, size_t errlen);
void vit_session_free(vit_session *s);
const char *vit_session_errmsg(const vit_session *s);
vit_device vit_session_device(const vit_session *s);      /* CPU or CUDA, never AUTO */
vit_precision vit_session_precision(const vit_session *s);
int vit_session_max_batch(const vit_session *s);
/* A host buffer of (max_batch, 3, image_size, image_size) floats owned by the session: fill it
 * and pass it as vit_forward's input (it is pinned memory on CUDA, so the transfer is one DMA at
 * full speed; vit_input_alloc gives more such buffers).  NULL when the backend has none (CPU).
 * Valid until vit_session_free; not to be written while a forward on it runs. */
float *vit_session_input_buffer(vit_session *s);
/* A host buffer for `images` input images ((images, 3, image_size, image_size) floats) that
 * vit_forward reads fastest: pinned (page-locked) memory on CUDA, so the copy to the GPU is one
 * DMA straight from it (plain memory when none can be pinned); 64-byte aligned memory on the CPU.  For callers that fill batches while
 * other batches run (vitd's batcher).  NULL on bad arguments or no memory.  Free with
 * vit_input_free(s, p) before freeing s.  A buffer for N images also holds N images of FP16 input
 * (half the bytes): cast it to uint16_t * for vit_forward_f16; the session's own buffer likewise. */
float *vit_input_alloc(vit_session *s, int images);
void vit_input_free(vit_session *s, float *p);
/* CUDA device gpu_id's name and memory in bytes (any pointer may be NULL), for /v1/models and
 * /metrics.  VIT_E_DEVICE when the build has no CUDA or there is no such device. */
vit_status vit_cuda_device_info(int gpu_id, char *name, size_t namelen, size_t *mem_total,
                                size_t *mem_free);

/* Outputs of one forward; any pointer may be NULL (that output is not computed). */
typedef struct vit_outputs {
    float *logits;           /* (B, num_classes of the head) */
    float *features;         /* (B, feature_dim): pooled representation that feeds the head */
    float *attn_cls;         /* (B, num_patches): last layer CLS->patch attention, head-averaged */
    float *attn_rollout;     /* (B, num_patches): attention rollout (Abnar & Zuidema 2020), CLS row */
} vit_outputs;

/* Forward B <= max_batch images.  input is (B, 3, image_size, image_size), already
 * preprocessed.  head NULL: the model's own head. */
vit_status vit_forward(vit_session *s, const float *input, int B, const vit_head *head,
                       vit_outputs *out);

/* Input element types.  VIT_INPUT_F16 is IEEE binary16, given as its bit patterns (uint16_t). */
typedef enum { VIT_INPUT_F32 = 0, VIT_INPUT_F16 = 1 } vit_input_type;
/* The input type this session reads fastest: F16 on CUDA sessions (the GPU computes in FP16 and
 * rounds FP32 input to FP16 as its first step, so F16 input halves the host-to-device copy), F32
 * on the CPU (F16 input is converted to FP32 there first).  Both types work on every session. */
vit_input_type vit_session_input_type(const vit_session *s);
/* vit_forward on FP16 input: input is (B, 3, image_size, image_size) binary16 bit patterns.
 * CUDA: B * 3 * image_size^2 * 2 bytes go to the GPU (from pinned memory when input comes from
 * vit_input_alloc or vit_session_input_buffer); the results are bit-identical to vit_forward on
 * the same values as FP32, since the GPU rounds FP32 input to nearest-even on arrival, which is
 * what vit_f32_to_f16 does.  CPU: converted to FP32 into a session buffer sized at
 * vit_session_new (no allocation per call), then vit_forward's computation: results equal
 * vit_forward on vit_f16_to_f32 of the input, bit for bit. */
vit_status vit_forward_f16(vit_session *s, const uint16_t *input, int B, const vit_head *head,
                           vit_outputs *out);

/* Self-check of a device before trusting it: the same deterministic batch of 2 image-like
 * inputs through a new session with opts and through a CPU FP32 session; features, logits (when
 * the model has a head) and CLS attention compared as max |x - ref| / max(1, max |ref|).
 * VIT_OK when every error is <= tol (and top-1 agrees wherever the reference is decisive);
 * VIT_E_BACKEND with the numbers in err when not; a session or forward error as such.  res gets
 * what was measured either way.  Costs one CPU forward of 2 images and a transient session. */
typedef struct vit_check_result {
    vit_device device;        /* what opts resolved to */
    vit_precision precision;
    double features_err, logits_err, attn_err;
    int top1_agree;
} vit_check_result;
vit_status vit_device_check(const vit_model *m, const vit_session_opts *opts, double tol,
                            vit_check_result *res, char *err, size_t errlen);

/* ---- images ------------------------------------------------------------------------ */

typedef enum { VIT_FMT_UNKNOWN = 0, VIT_FMT_JPEG, VIT_FMT_PNG } vit_image_format;

typedef struct vit_image {
    int width, height;
    uint8_t *rgb;            /* (height, width, 3) RGB8; alpha composited over white */
} vit_image;

/* Format from magic bytes only. */
vit_image_format vit_image_sniff(const void *data, size_t len);
/* Decode JPEG/PNG to RGB8 (EXIF orientation applied; gray -> 3 channels; 16-bit -> 8-bit).
 * The pixel count is checked against max_pixels from the header, before any pixel buffer. */
vit_status vit_image_decode(const void *data, size_t len, uint64_t max_pixels, vit_image *out,
                            char *err, size_t errlen);
void vit_image_free(vit_image *img);
/* Pixels -> normalized float tensor out (3, pp->out_h, pp->out_w), PIL-exact antialiased
 * resampling, torchvision center-crop offsets. */
vit_status vit_image_to_tensor(const vit_image *img, const vit_preprocess *pp, float *out,
                               char *err, size_t errlen);
/* decode + to_tensor in one call (may use DCT-domain JPEG scaling if pp->allow_dct_scaling). */
vit_status vit_image_load(const void *data, size_t len, const vit_preprocess *pp,
                          uint64_t max_pixels, float *out, char *err, size_t errlen);
/* What decoding one untrusted image may cost, checked from its headers before any pixel work
 * (vit_image_cost) and again while it decodes.  The cost is counted in samples touched:
 *   JPEG: for every scan, 64 x the 8x8 blocks of the components it codes (so a progressive
 *         file pays for each of its scans), plus width x height x 3 for the output;
 *   PNG:  width x height x channels (x2 for 16-bit samples, x2 for Adam7 interlacing, whose
 *         7 passes libpng combines row by row), plus width x height x 3 for the output.
 * Data that cannot back the declared size is refused as corrupt before any pixel work: a
 * Huffman JPEG scan that codes DC needs at least one bit per block, and deflate expands at
 * most 1032:1, so a 5 KB file cannot hold 50 Mpixel (it would decode as zero-filled padding).
 * Thread safety: the callbacks run on the decoding thread. */
typedef struct vit_decode_limits {
    uint64_t max_pixels;     /* width x height; 0: VIT_DEFAULT_MAX_PIXELS */
    uint64_t max_cost;       /* decode cost cap for this image; 0: none -> VIT_E_IMAGE_COST */
    int max_scans;           /* JPEG scans; 0: VIT_DEFAULT_MAX_SCANS -> VIT_E_IMAGE_POLICY */
    /* called once with the image's cost, after the header checks and before any pixel work
     * (a request's budget across its images); non-zero refuses it with VIT_E_IMAGE_COST */
    int (*charge)(void *ctx, uint64_t cost);
    /* polled while decoding (per JPEG iMCU row and scan, every 64 PNG rows) and before the
     * resize; non-zero stops the work with VIT_E_CANCELLED (client gone, deadline passed) */
    int (*cancelled)(void *ctx);
    void *ctx;
} vit_decode_limits;

/* The decode cost of an image from its headers and marker/chunk structure alone (no pixel
 * work, no allocation), checked against lim (NULL: the defaults, no cost cap).  VIT_OK with
 * *cost set; VIT_E_IMAGE_TOO_LARGE, VIT_E_IMAGE_COST, VIT_E_IMAGE_POLICY, VIT_E_IMAGE_CORRUPT
 * or VIT_E_IMAGE_FORMAT with a message. */
vit_status vit_image_cost(const void *data, size_t len, const vit_decode_limits *lim, uint64_t *cost,
                          char *err, size_t errlen);
/* vit_image_load under lim (NULL: as vit_image_load with VIT_DEFAULT_MAX_PIXELS). */
vit_status vit_image_load_limited(const void *data, size_t len, const vit_preprocess *pp,
                                  const vit_decode_limits *lim, float *out, char *err, size_t errlen);
/* Read preprocessing for a model directory: preprocessor_config.json (HF keys), else timm's
 * pretrained_cfg in config.json, else image_size bilinear with mean = std = 0.5.
 * image_size is the size the model runs at (overrides the crop size when it differs). */
vit_status vit_preprocess_load(const char *model_dir, int image_size, vit_preprocess *out,
                               char *err, size_t errlen);

/* ---- head training ----------------------------------------------------------------- */
/* Fine-tuning of a linear head on frozen features (the ViT paper's transfer recipe): softmax
 * cross-entropy, mini-batches, AdamW or SGD with PyTorch's exact update rules, deterministic
 * shuffling from a seed, an optional validation split, progress and cancellation.
 * Features come from vit_forward's `features` output.  FP32 on the CPU (OpenBLAS) or on CUDA
 * (cuBLAS SGEMM and small kernels, opts.device); thread-safe as
 * long as the buffers passed are not shared with a concurrent writer.  Label modes:
 * build the starting head with vit_head_init_for_training, then train it. */

typedef enum { VIT_OPT_ADAMW = 0, VIT_OPT_SGD = 1 } vit_optimizer;
typedef enum { VIT_LABELS_REPLACE = 0, VIT_LABELS_EXTEND = 1 } vit_label_mode;

typedef struct vit_train_opts {
    int epochs;              /* >= 1 */
    int batch_size;          /* >= 1; the last batch of an epoch may be smaller (drop_last=False) */
    float lr;                /* > 0 */
    float weight_decay;      /* >= 0; AdamW: decoupled (p -= lr*wd*p); SGD: L2 added to the grad.
                                Applied to weights and bias alike, as torch with one param group */
    vit_optimizer optimizer;
    float momentum;          /* SGD only, [0, 1) (torch: dampening 0, no Nesterov) */
    float beta1, beta2, eps; /* AdamW; all 0 = PyTorch defaults 0.9, 0.999, 1e-8 */
    float val_fraction;      /* [0, 0.9]: share of each class held out for validation (stratified,
                                seeded); classes with one example stay all in training */
    uint64_t seed;           /* shuffling and the split */
    const int32_t *perm;     /* optional (epochs, n_train): explicit batch order per epoch, indices
                                into the training set (only with val_fraction == 0); overrides seed */
    /* optional, called after every epoch (epoch counts from 1); val_accuracy is -1 with no
     * validation set */
    void (*progress)(void *ctx, int epoch, int epochs, float loss, float val_accuracy);
    /* optional, called before every batch: nonzero stops training with VIT_E_CANCELLED
     * (e.g. return atomic_load(&job->cancel)) */
    int (*should_stop)(void *ctx);
    void *cb_ctx;            /* passed to progress and should_stop */
    vit_device device;       /* where the arithmetic runs (FP32 on both): CPU (the default set by
                                vit_train_opts_default); CUDA (VIT_E_DEVICE when not built in or no
                                GPU); AUTO (the zero value): CUDA when built in and a GPU is present,
                                else the CPU.  To follow a session, pass vit_session_device(s).
                                Batches, split and coefficients are computed on the host either
                                way, so both devices train on identical batches. */
    int gpu_id;              /* CUDA device index */
    /* optional, called after every finished epoch (after progress) with a checkpoint of the run:
     * data[0..len) (borrowed for the call) holds everything needed to continue from there, see
     * "Checkpoints" below */
    void (*checkpoint)(void *ctx, int epoch, const void *data, size_t len);
    /* 0: a checkpoint after every epoch; > 0: after the first epoch, then only once this many
     * seconds have passed since the last one (a big head's checkpoint costs a copy of its
     * weights and moments: bounds that cost when epochs are short) */
    double checkpoint_every_s;
    /* optional, called after every finished epoch but the last (after progress): nonzero stops
     * the run there with VIT_E_CANCELLED (res->epochs_done that epoch), after a checkpoint of that
     * epoch whatever checkpoint_every_s says (when checkpoint is set).  For a hand-over: the run
     * stops where another process can continue it with nothing lost (vitd's trainer on drain). */
    int (*stop_after_epoch)(void *ctx);
    /* optional: continue from a checkpoint of this very run instead of starting at epoch 0 */
    const void *resume;
    size_t resume_len;
} vit_train_opts;

/* Fill o with the defaults: AdamW, lr 1e-3, weight decay 0.01 (torch's AdamW default),
 * 20 epochs, batch 32, SGD momentum 0.9, val_fraction 0, seed 0, device CPU. */
void vit_train_opts_default(vit_train_opts *o);

typedef struct vit_train_result {
    int epochs_done;
    float loss;              /* mean training loss of the last epoch */
    float train_accuracy;    /* on the training set with the final weights, [0, 1] */
    float val_accuracy;      /* on the validation set with the final weights; -1 without one */
    int n_train, n_val;
    vit_device device;       /* where it ran: CPU or CUDA */
    int resumed_from_epoch;  /* the checkpoint's epoch when opts.resume was given, else 0 */
} vit_train_result;

/* Train a linear head in place.  w (C, D), b (C): initial weights, overwritten.
 * x (N, D) features, y (N) class indices in [0, C).  res may be NULL.
 * Errors: VIT_E_ARG (bad option, label out of range), VIT_E_NOMEM, VIT_E_CANCELLED
 * (w and b then hold the weights reached so far), VIT_E_DEVICE (device CUDA asked for, none
 * available), VIT_E_BACKEND (a CUDA error, with its message). */
vit_status vit_train_linear(float *w, float *b, int C, int D, const float *x, const int32_t *y,
                            int N, const vit_train_opts *o, vit_train_result *res,
                            char *err, size_t errlen);

/* Checkpoints.  A checkpoint of a run after epoch k holds the head (w, b), the optimizer state
 * (AdamW/SGD moments and the step count), the shuffle RNG state and the current batch order, the
 * last epoch's loss and validation accuracy, and a hash of everything that defines the run (C, D,
 * N, the options that shape it: epochs, batch size, lr, weight decay, optimizer, momentum, betas,
 * eps, val_fraction, seed; the initial w and b, x, y and perm).  Versioned ("VITTRNCK" v1), in
 * the host's byte order, closed by a checksum; its size is fixed by C, D and N
 * (vit_train_checkpoint_size).  vit_train_linear with opts.resume continues at epoch k + 1 and,
 * on the CPU, ends with the same bits as the run that was never interrupted; on CUDA it continues
 * from the same state (same batches and coefficients; FP32 as any CUDA run).  A checkpoint that
 * is corrupt, of another version or byte order, or of another run (the hash, the sizes, the batch
 * order's validation rows differ) is refused with VIT_E_CHECKPOINT before any training: the
 * caller decides what to do (vitd's trainer starts the job again from epoch 0). */
typedef struct vit_train_checkpoint_info {
    int epoch, epochs;       /* epochs finished / the run's total */
    int C, D, N;
} vit_train_checkpoint_info;
/* The exact byte size of a checkpoint for C classes, D features, N examples; 0 when out of range
 * (C x D above 2^31, N < 1, ...). */
size_t vit_train_checkpoint_size(int C, int D, int N);
/* Check a checkpoint's framing (magic, version, byte order, sizes, checksum) without the run's
 * data and fill info.  VIT_OK or VIT_E_CHECKPOINT with the reason. */
vit_status vit_train_checkpoint_info_get(const void *data, size_t len,
                                         vit_train_checkpoint_info *info, char *err,
                                         size_t errlen);

/* Mean softmax cross-entropy of (w, b) on (x, y) and its gradient (dw (C, D), db (C); either may
 * be NULL).  Exposed for tests (gradient check) and for evaluation. */
double vit_linear_ce(const float *w, const float *b, int C, int D, const float *x,
                     const int32_t *y, int N, float *dw, float *db);

/* The starting head for training on examples whose label names are names[0..n):
 *   REPLACE: labels are exactly names, in that order; weights and bias zero (base may be NULL).
 *   EXTEND:  base's rows and labels first, unchanged; each name not among them is appended
 *            with a zero row.
 * dim is the feature size (must equal base's dim when base is given).  Names must be unique
 * and non-empty.  map[i] (may be NULL) receives the class index of names[i]. */
vit_status vit_head_init_for_training(const vit_head *base, vit_label_mode mode,
                                      const char *const *names, int n, int dim, vit_head **out,
                                      int32_t *map, char *err, size_t errlen);

/* Train a copy of init on (x (N, D), y (N)) and return it as a new head (one reference) with
 * init's labels.  init is not modified. */
vit_status vit_head_train(const vit_head *init, const float *x, const int32_t *y, int N,
                          const vit_train_opts *o, vit_head **out, vit_train_result *res,
                          char *err, size_t errlen);

/* Head files: a small safetensors file, "weight" F32 (C, D) and "bias" F32 (C), with
 * __metadata__ {"format": "vitd-head", "labels": "<JSON array>", plus the caller's string pairs
 * meta_kv[0..2*n_meta)}.  Written atomically (temporary file, fsync, rename, fsync of the
 * directory): a crash leaves the old file or the new one, never a torn one. */
vit_status vit_head_save(const vit_head *h, const char *path, const char *const *meta_kv,
                         int n_meta, char *err, size_t errlen);
/* Read a head file; everything is validated (VIT_E_CHECKPOINT names the problem).  meta_json
 * (may be NULL) receives the __metadata__ object as malloc'd JSON text. */
vit_status vit_head_load(const char *path, vit_head **out, char **meta_json, char *err,
                         size_t errlen);
/* Write a complete model directory out_dir (created if missing) from src_dir with head in place
 * of the checkpoint's: model.safetensors with every other tensor copied byte for byte and the
 * head tensors (HF classifier.* or DeiT cls_/distillation_classifier.*, timm head.* (+ head_dist.*),
 * torchvision heads.head.*)
 * written in F32; config.json with the head's labels (id2label/label2id/num_labels or
 * num_classes/label_names); preprocessor_config.json and labels.txt when present. */
vit_status vit_model_save_with_head(const char *src_dir, const vit_head *head, const char *out_dir,
                                    char *err, size_t errlen);

/* ---- build ------------------------------------------------------------------------- */

/* What this binary is, fixed at build time (scripts/gen_version.sh writes the header): version
 * from `git describe` (base version + commit where the tree has no tags, "-dirty" when it had
 * uncommitted changes), the full commit, the build type (release, debug, asan, fuzz) and whether
 * the CUDA backend is compiled in.  Static storage; valid for the life of the process. */
typedef struct vit_build_info {
    const char *version;
    const char *commit;
    const char *build_type;
    int cuda;
} vit_build_info;
const vit_build_info *vit_build(void);
/* "vit 0.1.0-dev+g50900ab (commit 50900ab..., release build, CUDA compiled in)" for `--version`:
 * prog, then vit_build()'s fields, into buf (always NUL-terminated). */
void vit_build_line(const char *prog, char *buf, size_t len);

/* ---- environment knobs ------------------------------------------------------------- */
/* The engine's tuning switches are environment variables (VIT_GEMM, VIT_CPU_PARALLEL,
 * VIT_CUDA_*, ...), all in one table (engine/knobs.c; `vit knobs` lists it).  vit_knobs_load
 * reads and validates every one; vit_model_load and vit_session_new call it, so a bad value
 * fails there: VIT_E_ARG, err naming the knob, its value and what it allows.  The values in
 * effect are those of the last successful load (the defaults before any).  Thread-safe. */
typedef struct vit_knob_info {
    const char *name;          /* "VIT_GEMM" */
    const char *type;          /* "bool", "int" or "enum" */
    const char *allowed;       /* "0|1", "1..16", "16|32|64", "auto|openblas|avx512" */
    const char *default_value; /* as the environment spells it */
    const char *doc;           /* one line */
    char value[24];            /* the value in effect, as the environment spells it */
    int from_env;              /* 1: set in the environment; 0: the default */
} vit_knob_info;
vit_status vit_knobs_load(char *err, size_t errlen);
int vit_knob_count(void);
/* knob i (0 <= i < vit_knob_count()) into *out: 0, or -1 when i is out of range */
int vit_knob_info_get(int i, vit_knob_info *out);
/* "NAME=value NAME=value ..." (every knob, its value in effect) into buf, snprintf-style:
 * returns the length the whole line needs, writes at most n bytes, NUL included */
size_t vit_knobs_summary(char *buf, size_t n);

/* ---- small helpers ----------------------------------------------------------------- */

void vit_softmax(float *x, int n);                                 /* in place, stable */
/* FP32 <-> IEEE binary16 (bit patterns), n values.  To FP16: round to nearest, ties to even;
 * magnitudes >= 65520 become inf, below the smallest normal (2^-14) FP16 subnormals, below 2^-25
 * (and 2^-25 itself) signed zero; inf stays inf; NaN stays NaN, quieted (sign and the top payload
 * bits kept), never turned into inf.  To FP32: exact (every binary16 value is an FP32 value),
 * subnormals included; NaNs quieted likewise.  So every non-NaN half, and every quiet NaN,
 * round-trips exactly.  The same bits on every host (F16C hardware where present, else portable
 * C).  Any n, any alignment; x and y must not overlap. */
void vit_f32_to_f16(const float *x, uint16_t *y, size_t n);
void vit_f16_to_f32(const uint16_t *x, float *y, size_t n);
/* indices of the k largest of x[0..n) into idx, descending; returns min(k, n) */
int vit_topk(const float *x, int n, int k, int *idx);

#ifdef __cplusplus
}
#endif
#endif /* VIT_H */
