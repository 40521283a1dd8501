/* fuzz_head.c: libFuzzer harness for head files (vit_head_load, engine/io/head_io.c): the input is
 * the whole file, read by path (a memfd).  On success the head must be consistent (labels
 * non-empty, finite weights) and the __metadata__ JSON text is freed with it. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "vit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfile(0, data, size);
    vit_head *h = NULL;
    char *meta = NULL;
    char err[512] = "";
    vit_status st = vit_head_load(path, &h, &meta, err, sizeof err);
    if (st != VIT_OK) {
        if (h || meta || !err[0]) abort();
        return 0;
    }
    int C = vit_head_num_classes(h), D = vit_head_dim(h);
    if (C < 1 || D < 1 || !meta) abort();
    for (int i = 0; i < C; i++) {
        const char *l = vit_head_label(h, i);
        if (!l || !l[0]) abort();
    }
    const float *w = vit_head_weight(h), *b = vit_head_bias(h);
    for (size_t i = 0; i < (size_t)C * D; i++)
        if (!isfinite(w[i])) abort();
    volatile float s = 0;
    for (int i = 0; i < C; i++) s += b[i];
    (void)s;
    free(meta);
    vit_head_release(h);
    return 0;
}
