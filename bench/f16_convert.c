/* f16_convert.c: speed of vit_f32_to_f16 / vit_f16_to_f32 (engine/util.c) on this host, F16C path
 * and portable reference, over 16 ViT-B/16 images (16 x 3 x 224 x 224 values, random in [-2, 2)):
 * what vitd's decoders pay per image to fill an FP16 batch on CUDA.  Single thread, median of 9.
 *   make && cc -O2 -std=c11 -D_GNU_SOURCE -Iengine bench/f16_convert.c build/libvit.a -lm \
 *        -o /tmp/f16_convert && /tmp/f16_convert */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "util.h"
#include "vit.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*to16_fn)(const float *, uint16_t *, size_t);
typedef void (*to32_fn)(const uint16_t *, float *, size_t);

static double med(double *t) { qsort(t, 9, sizeof *t, cmp); return t[4]; }

int main(void) {
    const size_t img = (size_t)3 * 224 * 224, n = 16 * img;
    float *x = malloc(n * 4), *z = malloc(n * 4);
    uint16_t *y = malloc(n * 2);
    if (!x || !y || !z) return 1;
    unsigned long long r = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        x[i] = (float)((r >> 11) * (1.0 / 9007199254740992.0)) * 4.f - 2.f;
    }
    const char *names[2] = {vit_f16c_available() ? "public (F16C)" : "public (portable: no F16C)", "portable"};
    to16_fn f16[2] = {vit_f32_to_f16, vit_f32_to_f16_portable};
    to32_fn f32[2] = {vit_f16_to_f32, vit_f16_to_f32_portable};
    printf("| path | f32->f16 ns/value | ms per 224x224 image | f16->f32 ns/value |\n|---|---|---|---|\n");
    for (int k = 0; k < 2; k++) {
        double a[9], b[9];
        for (int it = 0; it < 9; it++) {
            double t0 = vit_now();
            f16[k](x, y, n);
            a[it] = vit_now() - t0;
            t0 = vit_now();
            f32[k](y, z, n);
            b[it] = vit_now() - t0;
        }
        double ta = med(a), tb = med(b);
        printf("| %s | %.2f | %.3f | %.2f |\n", names[k], ta / n * 1e9, ta / 16 * 1e3, tb / n * 1e9);
    }
    free(x); free(y); free(z);
    return 0;
}
