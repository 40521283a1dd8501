/* fuzz_safetensors.c: libFuzzer harness for the safetensors reader (engine/io/safetensors.c): the
 * input is a whole .safetensors file, opened by path (a memfd) with st_open; on success every
 * tensor is looked up by name and read (F32/F16/BF16 with at most 64k elements) with
 * st_read_f32, and the reader's promises are checked (sorted unique names, byte ranges inside
 * the data section and of exactly the dtype's size). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/safetensors.h"

#define READ_MAX 65536

static float buf[READ_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_memfile(0, data, size);
    st_file *f = NULL;
    char err[512] = "";
    vit_status st = st_open(path, &f, err, sizeof err);
    if (st != VIT_OK) {
        if (f || !err[0]) abort();
        return 0;
    }
    uint64_t data_size = f->file_size - f->data_start;
    if (f->data_start < 10 || f->data_start > f->file_size) abort();
    for (int i = 0; i < f->n; i++) {
        st_tensor *t = &f->tensors[i];
        if (i && strcmp(f->tensors[i - 1].name, t->name) >= 0) abort();
        if (t->begin > t->end || t->end > data_size || t->end - t->begin != t->numel * st_dtype_size(t->dtype))
            abort();
        if (st_find(f, t->name) != t) abort();
        char sb[128];
        st_shape_str(t->shape, t->ndim, sb, sizeof sb);
        if ((t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16) && t->numel <= READ_MAX)
            st_read_f32(f, t, buf, err, sizeof err);
    }
    st_close(f);
    return 0;
}
