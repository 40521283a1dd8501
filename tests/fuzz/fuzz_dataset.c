/* fuzz_dataset.c: libFuzzer harness for the IDX datasets `vit eval` and `vit finetune` read
 * (engine/cli/dataset.c: optionally gzip'd MNIST-format images + labels files): the images file
 * and the labels file, separated by "\n@@@@\n", go to the scratch directory; cli_dataset_open
 * must accept or refuse them, and on success the first samples become tensors (8x8, the pixel
 * cap 1 Mpixel) with labels in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "../../engine/cli/dataset.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *p = data, *piece;
    size_t len = size, plen;
    static const char *const files[] = {"images-idx3-ubyte", "labels-idx1-ubyte"};
    for (int i = 0; i < 2; i++) {
        if (fuzz_split(&p, &len, "\n@@@@\n", &piece, &plen)) fuzz_dir_put(files[i], piece, plen);
        else fuzz_dir_put(files[i], NULL, 0);
    }
    char images[512], labels[512];
    snprintf(images, sizeof images, "%s/%s", fuzz_dir(), files[0]);
    snprintf(labels, sizeof labels, "%s/%s", fuzz_dir(), files[1]);
    cli_dataset *d = NULL;
    char err[512] = "";
    vit_status st = cli_dataset_open(images, labels, NULL, 0, 0, &d, err, sizeof err);
    if (st != VIT_OK) {
        if (d || !err[0]) abort();
        return 0;
    }
    int n = cli_dataset_count(d), C = cli_dataset_num_classes(d);
    if (n < 1 || C < 1) abort();
    vit_preprocess pp = {.do_resize = 1, .resize_h = 8, .resize_w = 8, .resample = VIT_RESAMPLE_BILINEAR,
                         .out_h = 8, .out_w = 8, .std = {1, 1, 1}};
    static float out[3 * 8 * 8];
    for (int i = 0; i < n && i < 4; i++) {
        int l = cli_dataset_label(d, i);
        if (l < 0 || l >= C) abort();
        char nb[600];
        cli_dataset_sample_name(d, i, nb, sizeof nb);
        cli_dataset_tensor(d, i, &pp, 1u << 20, out, err, sizeof err);
    }
    cli_dataset_free(d);
    return 0;
}
