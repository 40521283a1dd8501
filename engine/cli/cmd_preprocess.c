/* cmd_preprocess.c: `vit preprocess`: decode one image and write the model's input tensor.
 *   vit preprocess --model DIR IMAGE --output X.npy [--max-pixels N] [--fast] [--pil-exact] [--image-size N]
 *   vit preprocess --model DIR --bench N [--fast] IMAGE...   (ms/image of decode + preprocess)
 * Exit status: 0 ok, 2 usage, 3 i/o, 4 unsupported format, 5 too large, 6 corrupt, 7 config, 1 other. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "util.h"

#define MAX_FILE_BYTES ((size_t)256 << 20)

/* this thread's CPU time in seconds: the benchmark figure that other processes on the machine
 * disturb least */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int exit_code(vit_status st) {
    switch (st) {
    case VIT_OK: return 0;
    case VIT_E_IO: return 3;
    case VIT_E_IMAGE_FORMAT: return 4;
    case VIT_E_IMAGE_TOO_LARGE: return 5;
    case VIT_E_IMAGE_CORRUPT: return 6;
    case VIT_E_CONFIG: return 7;
    default: return 1;
    }
}

static void usage(FILE *f) {
    fprintf(f, "usage: vit preprocess --model DIR IMAGE --output X.npy [--max-pixels N] [--fast] [--pil-exact] [--image-size N]\n"
               "       vit preprocess --model DIR --bench N [--fast] [--pil-exact] IMAGE...\n"
               "  writes float32 (1, 3, H, W); --fast allows DCT-domain JPEG downscaling (approximate);\n"
               "  --pil-exact resizes in PIL's 8-bit fixed point (tensor equal to PIL + torchvision's)\n");
}

int cmd_preprocess(int argc, char **argv) {
    const char *model = NULL, *output = NULL;
    const char **images = calloc((size_t)argc, sizeof *images);
    int nimages = 0, fast = 0, pil_exact = 0, bench = 0, image_size = 0, rc = 1;
    unsigned long long max_pixels = VIT_DEFAULT_MAX_PIXELS;
    float *x = NULL;
    uint8_t **bufs = NULL;
    size_t *lens = NULL;
    if (!images) { fprintf(stderr, "vit preprocess: out of memory\n"); return 1; }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); rc = 0; goto out; }
        else if (!strcmp(a, "--model") && v) { model = v; i++; }
        else if (!strcmp(a, "--output") && v) { output = v; i++; }
        else if (!strcmp(a, "--fast")) fast = 1;
        else if (!strcmp(a, "--pil-exact")) pil_exact = 1;
        else if (!strcmp(a, "--bench") && v) { if ((bench = cli_parse_int("--bench", v, 1, 1000000)) < 0) { rc = 2; goto out; } i++; }
        else if (!strcmp(a, "--image-size") && v) { if ((image_size = cli_parse_int("--image-size", v, 1, 16384)) < 0) { rc = 2; goto out; } i++; }
        else if (!strcmp(a, "--max-pixels") && v) {
            char *end;
            max_pixels = strtoull(v, &end, 10);
            if (!*v || *end || max_pixels == 0) { fprintf(stderr, "vit preprocess: --max-pixels: bad value '%s'\n", v); rc = 2; goto out; }
            i++;
        } else if (a[0] == '-' && a[1]) { rc = cli_unknown_option("preprocess", a, usage, NULL); goto out; }
        else images[nimages++] = a;
    }
    if (!model || nimages == 0 || (!bench && (!output || nimages != 1))) {
        usage(stderr);
        rc = 2;
        goto out;
    }
    char err[512];
    vit_preprocess pp;
    vit_status st = vit_preprocess_load(model, image_size, &pp, err, sizeof err);
    if (st) { fprintf(stderr, "vit preprocess: %s: %s\n", vit_status_str(st), err); rc = exit_code(st); goto out; }
    pp.allow_dct_scaling = fast;
    pp.pil_exact = pil_exact;
    const int ch = pp.channels ? pp.channels : 3;
    x = malloc(sizeof(float) * ch * (size_t)pp.out_h * pp.out_w);   /* (1, C, H, W) */
    bufs = calloc((size_t)nimages, sizeof *bufs);
    lens = calloc((size_t)nimages, sizeof *lens);
    if (!x || !bufs || !lens) { fprintf(stderr, "vit preprocess: out of memory\n"); goto out; }
    for (int i = 0; i < nimages; i++) {
        st = vit_read_file(images[i], MAX_FILE_BYTES, &bufs[i], &lens[i], err, sizeof err);
        if (st) { fprintf(stderr, "vit preprocess: %s\n", err); rc = exit_code(st == VIT_E_ARG ? VIT_E_IMAGE_TOO_LARGE : st); goto out; }
    }
    if (bench) {
        /* one warm-up pass, then N passes over all images */
        double t0 = 0, c0 = 0;
        for (int it = -1; it < bench; it++) {
            if (it == 0) { t0 = vit_now(); c0 = cpu_now(); }
            for (int i = 0; i < nimages; i++) {
                st = vit_image_load(bufs[i], lens[i], &pp, max_pixels, x, err, sizeof err);
                if (st) { fprintf(stderr, "vit preprocess: %s: %s\n", images[i], err); rc = exit_code(st); goto out; }
            }
        }
        double n = (double)bench * nimages;
        double ms = (vit_now() - t0) * 1e3 / n, cpu = (cpu_now() - c0) * 1e3 / n;
        printf("%.3f ms/image (cpu %.3f ms/image; %d images x %d iterations, %s%s path)\n", ms, cpu, nimages, bench,
               fast ? "fast" : "exact", pil_exact ? " pil-exact" : "");
        rc = 0;
        goto out;
    }
    st = vit_image_load(bufs[0], lens[0], &pp, max_pixels, x, err, sizeof err);
    if (st) { fprintf(stderr, "vit preprocess: %s: %s\n", images[0], err); rc = exit_code(st); goto out; }
    int64_t shape[4] = {1, ch, pp.out_h, pp.out_w};
    st = vit_npy_write(output, x, shape, 4, err, sizeof err);
    if (st) { fprintf(stderr, "vit preprocess: %s\n", err); rc = exit_code(st); goto out; }
    rc = 0;
out:
    if (bufs) for (int i = 0; i < nimages; i++) free(bufs[i]);
    free(bufs);
    free(lens);
    free(x);
    free(images);
    return rc;
}
