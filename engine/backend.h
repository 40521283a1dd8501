/* backend.h: the table of functions behind a session (CPU reference, CUDA), and the session
 * struct they share.  vit_session_new picks a backend from opts.device; vit_forward calls it. */
#ifndef VIT_BACKEND_H
#define VIT_BACKEND_H
#include "model.h"

typedef struct vit_backend {
    const char *name;             /* "cpu", "cuda" */
    /* allocate everything for s->opts.max_batch into s->state; fill err on failure */
    vit_status (*init)(vit_session *s, char *err, size_t errlen);
    /* input (B,3,H,W) host FP32; outputs host; head non-NULL (resolved by vit_forward) */
    vit_status (*forward)(vit_session *s, const float *input, int B, const vit_head *head,
                          vit_outputs *out);
    /* optional (NULL: vit_forward_f16 converts into s->f16_in and calls forward): input
     * (B,3,H,W) host IEEE binary16 bits, read as such by the device */
    vit_status (*forward_f16)(vit_session *s, const uint16_t *input, int B, const vit_head *head,
                              vit_outputs *out);
    void (*free)(vit_session *s); /* release s->state */
    /* optional (NULL: none): the session's input staging buffer, see vit_session_input_buffer */
    float *(*input_buffer)(vit_session *s);
    /* optional (NULL: aligned malloc/free): host memory the forward reads fastest (pinned) */
    void *(*host_alloc)(size_t bytes);
    void (*host_free)(void *p);
} vit_backend;

struct vit_session {
    const vit_model *model;
    vit_session_opts opts;        /* resolved: device is CPU or CUDA, threads >= 1 */
    const vit_backend *backend;
    void *state;                  /* backend-owned scratch */
    float *f16_in;                /* (max_batch,3,H,W) FP32: vit_forward_f16's converted input
                                     when the backend has no forward_f16 (allocated at creation,
                                     untouched until used, so it costs address space only) */
    char errmsg[256];
    /* CPU backend, FP32: called with the input X (rows, K) of Linear `linear` (0 qkv, 1 proj,
     * 2 fc1, 3 fc2) of block `layer` before it runs, possibly from several threads at once
     * (calib.c sets it; NULL otherwise) */
    void (*observe)(void *ctx, int layer, int linear, const float *X, int rows, int K);
    void *observe_ctx;
};

extern const vit_backend vit_backend_cpu;
/* sessions sharing m's packed weights (int8: the INT8 copy, else the FP32 one); 0 when that
 * copy does not exist.  For the tests: the copies are made once per model and freed with the
 * last session (engine/cpu/cpu_forward.c). */
int vit_cpu_packed_refs(const vit_model *m, int int8);
#ifdef VIT_HAVE_CUDA
extern const vit_backend vit_backend_cuda;
/* number of usable CUDA devices (0 when no driver/device); never fails */
int vit_cuda_device_count(void);
#endif

#endif
