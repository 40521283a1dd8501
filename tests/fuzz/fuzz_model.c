/* fuzz_model.c: libFuzzer harness for loading a model directory (vit_model_load: config.json,
 * model.safetensors, preprocessor_config.json, labels.txt; and vit_preprocess_load on its own).
 * Input: the files' contents in that order, separated by the line "\n@@@@\n"; a file whose
 * section is missing is absent from the directory.  The files go to a per-process scratch
 * directory on /dev/shm.  Seeds are tiny models (D = 4, one layer) so an iteration is fast.
 * On success the loaded config must be self-consistent. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "vit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = data, *piece;
    size_t len = size, plen;
    static const char *const files[] = {"config.json", "model.safetensors", "preprocessor_config.json", "labels.txt"};
    for (int i = 0; i < 4; i++) {
        if (fuzz_split(&p, &len, "\n@@@@\n", &piece, &plen)) fuzz_dir_put(files[i], piece, plen);
        else fuzz_dir_put(files[i], NULL, 0);
    }
    const char *dir = fuzz_dir();
    char err[1024] = "";
    vit_model *m = NULL;
    vit_status st = vit_model_load(dir, NULL, &m, err, sizeof err);
    if (st != VIT_OK) {
        if (m || !err[0]) abort();
    } else {
        const vit_config *c = vit_model_config(m);
        if (c->hidden_size < 1 || c->num_heads < 1 || c->hidden_size % c->num_heads || c->num_layers < 1 ||
            c->patch_size < 1 || c->image_size % c->patch_size || c->num_classes < 1 ||
            c->num_tokens != c->num_prefix_tokens + c->grid_h * c->grid_w || !c->labels)
            abort();
        for (int i = 0; i < c->num_classes; i++)
            if (!c->labels[i]) abort();
        const vit_head *h = vit_model_head(m);
        if (vit_head_num_classes(h) != c->num_classes || vit_head_dim(h) != c->feature_dim) abort();
        if (c->preprocess.out_h != c->image_size || c->preprocess.out_w != c->image_size) abort();
        vit_model_free(m);
    }
    vit_preprocess pp;
    err[0] = 0;
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    if (st != VIT_OK && !err[0]) abort();
    return 0;
}
