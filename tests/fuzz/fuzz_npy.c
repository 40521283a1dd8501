/* fuzz_npy.c: libFuzzer harness for the .npy reader (vit_npy_read, engine/util.c): the input
 * is the whole file, read by path (a memfd).  On success the shape must describe exactly the
 * data returned (every element is read, so ASan sees a short buffer). */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfile(0, data, size);
    float *x = NULL;
    int64_t shape[8];
    int nd = -1;
    char err[512] = "";
    vit_status st = vit_npy_read(path, &x, shape, &nd, err, sizeof err);
    if (st != VIT_OK) {
        if (x || !err[0]) abort();
        return 0;
    }
    if (nd < 0 || nd > 8 || !x) abort();
    uint64_t n = 1;
    for (int i = 0; i < nd; i++) {
        if (shape[i] < 0) abort();
        n *= (uint64_t)shape[i];
    }
    if (n * 4 > size) abort();
    volatile float s = 0;
    for (uint64_t i = 0; i < n; i++) s += x[i];
    (void)s;
    free(x);
    return 0;
}
