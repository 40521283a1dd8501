/* batch_sweep.c: the engine alone, ms per image at batch 1..64 with 1 and 2 threads, plus the
 * decode + preprocess time of one image: tells whether dynamic batching can pay off on this
 * machine (bench/results/loadtest.md quotes it).  Build and run with loadtest/batch_sweep.sh,
 * which pauses the training run meanwhile. */
#include <stdio.h>
#include <stdlib.h>

#include "util.h"
#include "vit.h"

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: batch_sweep MODEL_DIR IMAGE\n"); return 2; }
    char err[256];
    vit_model *m;
    if (vit_model_load(argv[1], NULL, &m, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    const vit_config *c = vit_model_config(m);
    size_t el = (size_t)3 * c->image_size * c->image_size;
    float *x = calloc(64 * el, sizeof(float)), *lg = malloc(sizeof(float) * 64 * (size_t)c->num_classes);
    if (!x || !lg) return 1;
    static const int bs[] = {1, 4, 8, 16, 32, 64};
    for (int th = 1; th <= 2; th++) {
        vit_session *s;
        vit_session_opts so = {.max_batch = 64, .threads = th, .device = VIT_DEVICE_CPU};
        if (vit_session_new(m, &so, &s, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
        for (int i = 0; i < 6; i++) {
            int B = bs[i];
            vit_outputs o = {.logits = lg};
            vit_forward(s, x, B, NULL, &o);
            double t0 = vit_now();
            int n = 0;
            while (vit_now() - t0 < 1.0) { vit_forward(s, x, B, NULL, &o); n++; }
            double dt = (vit_now() - t0) / n;
            printf("threads %d batch %2d: %7.2f ms/batch %6.3f ms/image %6.0f images/s\n", th, B, dt * 1e3, dt * 1e3 / B, B / dt);
        }
        vit_session_free(s);
    }
    uint8_t *d;
    size_t len;
    if (vit_read_file(argv[2], 1 << 26, &d, &len, err, sizeof err)) { fprintf(stderr, "%s\n", err); return 1; }
    double t0 = vit_now();
    int n = 0;
    while (vit_now() - t0 < 1.0) { vit_image_load(d, len, &c->preprocess, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err); n++; }
    printf("decode + preprocess %s: %.3f ms/image\n", argv[2], (vit_now() - t0) / n * 1e3);
    free(d); free(x); free(lg);
    vit_model_free(m);
    return 0;
}
