/* test_image.c: the image pipeline against PIL + torchvision.
 *  - every good test image (tests/data/images, listed in tests/fixtures/image/manifest.txt):
 *    vit_image_load's tensor vs torchvision's (Resize(256), CenterCrop(224), ToTensor,
 *    Normalize; EXIF applied, alpha over white), mean |diff| <= 0.01 and max <= 0.05;
 *  - every bad input returns its status with a message; the 60000x60000 headers are refused
 *    before any pixel-sized allocation (allocation high-water mark checked);
 *  - tiny bilinear/bicubic resizes and crops vs PIL's float math and PIL's uint8 result;
 *  - vit_preprocess_load for HF, timm and default model directories;
 *  - every prefix of a JPEG and a PNG, and random byte flips: a status, never a crash.
 * Run from the repository root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "harness.h"
#include "image/image_internal.h"
#include "util.h"

#define FIX "tests/fixtures/image"
#define IMG "tests/data/images"

static uint8_t *slurp(const char *path, size_t *len) {
    uint8_t *b;
    char err[256];
    if (vit_read_file(path, (size_t)64 << 20, &b, len, err, sizeof err)) { printf("# %s\n", err); return NULL; }
    return b;
}

static vit_status status_of(const char *name) {
    if (!strcmp(name, "corrupt")) return VIT_E_IMAGE_CORRUPT;
    if (!strcmp(name, "format")) return VIT_E_IMAGE_FORMAT;
    if (!strcmp(name, "too_large")) return VIT_E_IMAGE_TOO_LARGE;
    return VIT_E_INTERNAL;
}

/* ours (3, 224, 224) vs the reference u8 (112, 112, 3) at even rows and columns */
static void compare_ref(const float *x, const uint8_t *ref, const vit_preprocess *pp, double *mean, double *max) {
    double s = 0, m = 0;
    for (int y = 0; y < 112; y++)
        for (int xx = 0; xx < 112; xx++)
            for (int c = 0; c < 3; c++) {
                float r = ((float)ref[(y * 112 + xx) * 3 + c] / 255.f - pp->mean[c]) / pp->std[c];
                float o = x[(size_t)c * 224 * 224 + (size_t)(2 * y) * 224 + 2 * xx];
                double d = isfinite(o) ? fabs((double)o - r) : INFINITY;
                s += d;
                if (d > m) m = d;
            }
    *mean = s / (112.0 * 112 * 3);
    *max = m;
}

static void test_manifest(void) {
    char err[512];
    vit_preprocess pp;
    vit_status st = vit_preprocess_load(FIX "/model", 0, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.out_h == 224 && pp.out_w == 224 && pp.shortest_edge == 256 && pp.do_center_crop &&
          pp.resample == VIT_RESAMPLE_BILINEAR, "fixture preprocessor_config.json: %s", st ? err : "resize 256, crop 224");
    vit_preprocess ppt;  /* timm: Resize(248) bicubic, CenterCrop(224), mean = std = 0.5 */
    st = vit_preprocess_load(FIX "/model_timm", 0, &ppt, err, sizeof err);
    CHECK(st == VIT_OK && ppt.shortest_edge == 248 && ppt.out_h == 224 && ppt.resample == VIT_RESAMPLE_BICUBIC,
          "fixture timm config.json: %s", st ? err : "resize 248 bicubic, crop 224");
    int ntimm = 0;
    FILE *f = fopen(FIX "/manifest.txt", "r");
    CHECK(f != NULL, "manifest present");
    if (!f) return;
    float *x = malloc(sizeof(float) * 3 * 224 * 224);
    char line[512], kind[16], file[256], arg[256];
    int ngood = 0, nbad = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%15s %255s %255s", kind, file, arg) != 3) continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", IMG, file);
        size_t len;
        uint8_t *data = slurp(path, &len);
        if (!data) { CHECK(0, "%s: cannot read", file); continue; }
        if (!strcmp(kind, "timm")) {
            ntimm++;
            size_t rlen;
            char rpath[600];
            snprintf(rpath, sizeof rpath, "%s/%s", FIX, arg);
            uint8_t *ref = slurp(rpath, &rlen);
            st = ref && rlen == 112 * 112 * 3 ? vit_image_load(data, len, &ppt, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err)
                                              : VIT_E_IO;
            if (st) CHECK(0, "%s (timm bicubic): %s", file, err);
            else {
                double mean, max;
                compare_ref(x, ref, &ppt, &mean, &max);
                CHECK(mean <= 0.01 && max <= 0.05, "%s (timm, bicubic 248/224) vs timm/torchvision mean=%.5f maxdiff=%.5f "
                      "tol=0.01/0.05", file, mean, max);
                vit_preprocess pe = ppt;
                pe.pil_exact = 1;
                st = vit_image_load(data, len, &pe, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err);
                mean = max = 0;
                if (st == VIT_OK) compare_ref(x, ref, &ppt, &mean, &max);
                CHECK(st == VIT_OK && max <= 1e-6, "%s (timm) pil_exact vs timm/torchvision maxdiff=%.2g tol=1e-6", file, max);
            }
            free(ref);
        } else if (!strcmp(kind, "good")) {
            ngood++;
            size_t rlen;
            char rpath[600];
            snprintf(rpath, sizeof rpath, "%s/%s", FIX, arg);
            uint8_t *ref = slurp(rpath, &rlen);
            if (!ref || rlen != 112 * 112 * 3) { CHECK(0, "%s: reference %s missing or wrong size", file, arg); free(data); free(ref); continue; }
            /* vit_image_load decodes only the region the resize reads (JPEG): it must give exactly
             * what decoding everything and vit_image_to_tensor give */
            {
                float *y = malloc(sizeof(float) * 3 * 224 * 224);
                vit_image img;
                st = vit_image_decode(data, len, VIT_DEFAULT_MAX_PIXELS, &img, err, sizeof err);
                if (st == VIT_OK) st = vit_image_to_tensor(&img, &pp, y, err, sizeof err);
                vit_image_free(&img);
                vit_status st2 = vit_image_load(data, len, &pp, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err);
                char label[400];
                snprintf(label, sizeof label, "%s: vit_image_load (region decode) == decode + to_tensor", file);
                if (st || st2) CHECK(0, "%s: %s", label, err);
                else CHECK_CLOSE(x, y, 3 * 224 * 224, 0.f, label);
                free(y);
            }
            /* pil_exact: PIL's own fixed-point resize, so torchvision's tensor bit for bit */
            {
                vit_preprocess pe = pp;
                pe.pil_exact = 1;
                st = vit_image_load(data, len, &pe, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err);
                double mean = 0, max = 0;
                if (st == VIT_OK) compare_ref(x, ref, &pp, &mean, &max);
                CHECK(st == VIT_OK && max <= 1e-6, "%s pil_exact vs torchvision mean=%.2g maxdiff=%.2g tol=1e-6 %s", file,
                      mean, max, st ? err : "");
            }
            for (int fast = 0; fast < 2; fast++) {
                vit_preprocess p2 = pp;
                p2.allow_dct_scaling = fast;
                for (size_t i = 0; i < 3 * 224 * 224; i++) x[i] = NAN;
                st = vit_image_load(data, len, &p2, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err);
                if (st) { CHECK(0, "%s%s: %s: %s", file, fast ? " (fast)" : "", vit_status_str(st), err); continue; }
                double mean, max;
                compare_ref(x, ref, &pp, &mean, &max);
                /* the fast path (DCT-domain downscaling, only for images >= 2x the resize target)
                 * is approximate: sharp edges ring inside 8x8 blocks; its bound is looser */
                if (!fast)
                    CHECK(mean <= 0.01 && max <= 0.05, "%s vs torchvision mean=%.5f maxdiff=%.5f tol=0.01/0.05",
                          file, mean, max);
                else
                    CHECK(mean <= 0.05 && max <= 1.5, "%s (fast) vs torchvision mean=%.5f maxdiff=%.5f tol=0.05/1.5",
                          file, mean, max);
            }
            free(ref);
        } else if (strcmp(kind, "bad")) {
            CHECK(0, "manifest: unknown entry kind '%s' (%s)", kind, file);
        } else {
            nbad++;
            vit_status want = status_of(arg);
            vit_image img = {0};
            err[0] = 0;
            vit_image_alloc_hwm_reset();
            double t0 = vit_now();
            st = vit_image_decode(data, len, VIT_DEFAULT_MAX_PIXELS, &img, err, sizeof err);
            double ms = (vit_now() - t0) * 1e3;
            size_t hwm = vit_image_alloc_hwm();
            CHECK(st == want && err[0] && img.rgb == NULL, "%s -> %s (want %s) in %.2f ms: %s", file,
                  vit_status_str(st), vit_status_str(want), ms, err);
            if (want == VIT_E_IMAGE_TOO_LARGE)
                CHECK(hwm < (1u << 20), "%s refused before any pixel buffer (largest allocation %zu bytes)", file, hwm);
            st = vit_image_load(data, len, &pp, VIT_DEFAULT_MAX_PIXELS, x, err, sizeof err);
            CHECK(st == want, "%s via vit_image_load -> %s", file, vit_status_str(st));
        }
        free(data);
    }
    fclose(f);
    free(x);
    CHECK(ngood >= 20 && nbad >= 12 && ntimm >= 4, "manifest has %d good, %d bad and %d timm entries", ngood, nbad, ntimm);
}

/* what a decode of damaged bytes may give: an image with pixels (the damage missed what matters),
 * or an image error (corrupt, format, too large) with a message and no pixels left behind */
static int flip_result_ok(vit_status st, const vit_image *img, const char *err) {
    if (st == VIT_OK) return img->rgb && img->width > 0 && img->height > 0;
    return (st == VIT_E_IMAGE_CORRUPT || st == VIT_E_IMAGE_FORMAT || st == VIT_E_IMAGE_TOO_LARGE) &&
           err[0] && !img->rgb;
}

/* every prefix (in ~97 steps) of an image file: refused as corrupt or unknown format */
static void check_prefixes(const char *what, const uint8_t *d, size_t len) {
    vit_image img = {0};
    char err[256];
    int bad = 0, n = 0;
    for (size_t cut = 0; cut < len; cut += len / 97 + 1, n++) {
        vit_status st = vit_image_decode(d, cut, 0, &img, err, sizeof err);
        if (st != VIT_E_IMAGE_CORRUPT && st != VIT_E_IMAGE_FORMAT) bad++;
        vit_image_free(&img);
    }
    CHECK(bad == 0, "%d %s prefixes all refused as corrupt or unknown (%d not)", n, what, bad);
}

/* 60 copies of an image file with 4 random bytes (at offsets >= from) flipped: each decodes or is
 * refused as flip_result_ok allows */
static void check_flips(const char *what, const uint8_t *d, size_t len, size_t from) {
    vit_image img = {0};
    char err[256];
    uint8_t *m = malloc(len);
    int ok = 0, bad = 0;
    for (int it = 0; m && it < 60; it++) {
        memcpy(m, d, len);
        for (int k = 0; k < 4; k++) m[from + (size_t)rand() % (len - from)] = (uint8_t)rand();
        err[0] = 0;
        vit_status st = vit_image_decode(m, len, 0, &img, err, sizeof err);
        ok += st == VIT_OK;
        bad += !flip_result_ok(st, &img, err);
        vit_image_free(&img);
    }
    CHECK(m && bad == 0, "60 %s with flipped bytes: each decoded or refused with a message (%d decoded, %d not so)",
          what, ok, bad);
    free(m);
}

static void test_decode_details(void) {
    char err[512];
    size_t len;
    vit_image img;
    uint8_t *d = slurp(IMG "/jpeg_baseline.jpg", &len);
    if (!d) { CHECK(0, "read jpeg_baseline.jpg"); return; }
    CHECK(vit_image_sniff(d, len) == VIT_FMT_JPEG && vit_image_sniff(d, 2) == VIT_FMT_UNKNOWN &&
          vit_image_sniff(NULL, 0) == VIT_FMT_UNKNOWN, "sniff JPEG by magic bytes only");
    vit_image_alloc_hwm_reset();
    vit_status st = vit_image_decode(d, len, 0, &img, err, sizeof err);
    CHECK(st == VIT_OK && img.width == 451 && img.height == 300, "decode 451x300 (%dx%d)", img.width, img.height);
    CHECK(vit_image_alloc_hwm() >= (size_t)451 * 300 * 3, "allocation high-water mark sees the pixel buffer (%zu)",
          vit_image_alloc_hwm());
    vit_image_free(&img);
    vit_image_free(&img);  /* twice: harmless */
    vit_image_free(NULL);
    CHECK(vit_image_decode(d, len, 451 * 300 - 1, &img, err, sizeof err) == VIT_E_IMAGE_TOO_LARGE,
          "pixel cap one below the size refuses: %s", err);
    CHECK(vit_image_decode(d, len, 451 * 300, &img, err, sizeof err) == VIT_OK, "pixel cap at the size accepts");
    vit_image_free(&img);

    /* every prefix (in steps) of a JPEG and a PNG: an error, never a crash or a leak; random byte
     * flips: an image or an image error with a message, never a crash (the ASan run checks memory) */
    check_prefixes("JPEG", d, len);
    srand(1);
    check_flips("JPEGs", d, len, 0);
    free(d);

    d = slurp(IMG "/png_interlaced.png", &len);
    if (!d) { CHECK(0, "read png_interlaced.png"); return; }
    CHECK(vit_image_sniff(d, len) == VIT_FMT_PNG, "sniff PNG");
    check_prefixes("PNG", d, len);
    check_flips("PNGs", d, len, 33);   /* past the signature and IHDR */
    free(d);

    /* EXIF orientation: stored 200x300 (sideways), shown 300x200 */
    const char *rot[] = {"jpeg_exif5.jpg", "jpeg_exif6.jpg", "jpeg_exif7.jpg", "jpeg_exif8.jpg", "png_exif6.png"};
    for (int i = 0; i < 5; i++) {
        char p[256];
        snprintf(p, sizeof p, "%s/%s", IMG, rot[i]);
        d = slurp(p, &len);
        st = d ? vit_image_decode(d, len, 0, &img, err, sizeof err) : VIT_E_IO;
        CHECK(st == VIT_OK && img.width == 300 && img.height == 200, "%s decodes upright as 300x200 (%dx%d)", rot[i],
              img.width, img.height);
        vit_image_free(&img);
        free(d);
    }
    /* extreme aspect ratios: 1x200 resizes to 256x51200 (only the crop is computed); 1x70000 would be
     * 256x17920000, more than the 2^24 per side we accept */
    {
        uint8_t *px = calloc(70000 * 3, 1);
        float *t = malloc(sizeof(float) * 3 * 224 * 224);
        vit_preprocess pp = {.do_resize = 1, .shortest_edge = 256, .resample = VIT_RESAMPLE_BICUBIC, .do_center_crop = 1,
                             .crop_h = 224, .crop_w = 224, .out_h = 224, .out_w = 224, .std = {1, 1, 1}};
        vit_image thin = {.width = 1, .height = 200, .rgb = px};
        st = vit_image_to_tensor(&thin, &pp, t, err, sizeof err);
        CHECK(st == VIT_OK && t[0] == 0.f, "1x200 image: resized to 256x51200, cropped (%s)", st ? err : "ok");
        thin.height = 70000;
        st = vit_image_to_tensor(&thin, &pp, t, err, sizeof err);
        CHECK(st == VIT_E_IMAGE_TOO_LARGE, "1x70000 image refused: %s", err);
        thin.height = 60000;
        st = vit_image_to_tensor(&thin, &pp, t, err, sizeof err);
        CHECK(st == VIT_OK, "1x60000 image: resized to 256x15360000, cropped (%s)", st ? err : "ok");
        free(px);
        free(t);
    }
    /* squashed to a fixed size (HF), an absurd aspect ratio costs out_w x in_h, not the pixels: a
     * 33x64788 JPEG (fuzzer, tests/fuzz/regress/image) took 3.5 s per request under ASan, and a
     * 4M x 1 image would need 8.4M horizontal taps (67 MB): both refused with 413's status */
    {
        uint8_t *px = calloc((size_t)4 << 20, 3);
        float *t = malloc(sizeof(float) * 3 * 224 * 224);
        vit_preprocess pp = {.do_resize = 1, .resize_h = 224, .resize_w = 224, .resample = VIT_RESAMPLE_BILINEAR,
                             .out_h = 224, .out_w = 224, .std = {1, 1, 1}};
        vit_image im = {.width = 33, .height = 64788, .rgb = px};
        st = vit_image_to_tensor(&im, &pp, t, err, sizeof err);
        CHECK(st == VIT_E_IMAGE_TOO_LARGE, "33x64788 squashed to 224x224 refused: %s", err);
        im = (vit_image){.width = 4 << 20, .height = 1, .rgb = px};
        st = vit_image_to_tensor(&im, &pp, t, err, sizeof err);
        CHECK(st == VIT_E_IMAGE_TOO_LARGE, "4Mx1 squashed to 224x224 refused: %s", err);
        im = (vit_image){.width = 200, .height = 20000, .rgb = px};  /* 1:100 still runs */
        st = vit_image_to_tensor(&im, &pp, t, err, sizeof err);
        CHECK(st == VIT_OK, "200x20000 squashed to 224x224 (%s)", st ? err : "ok");
        pp.resample = 1;  /* lanczos downscaling, the most taps per pixel an ordinary image needs */
        im = (vit_image){.width = 2048, .height = 2048, .rgb = px};
        st = vit_image_to_tensor(&im, &pp, t, err, sizeof err);
        CHECK(st == VIT_OK, "2048x2048 lanczos to 224x224 (%s)", st ? err : "ok");
        free(px);
        free(t);
    }
    /* a 45-byte PNG whose eXIf chunk (before the image data) claims 1.2 GB: libpng allocated the
     * declared length before reading it (fuzzer, tests/fuzz/regress/image); now refused first */
    {
        uint8_t png[45] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R',
                           0, 0, 0, 16, 0, 0, 0, 12, 8, 2, 0, 0, 0, 0, 0, 0, 0,
                           0x47, 0, 0, 0x1a, 'e', 'X', 'I', 'f', 'M', 'M', 0, 42};
        uint32_t crc = (uint32_t)crc32(0, png + 12, 17);
        png[29] = (uint8_t)(crc >> 24); png[30] = (uint8_t)(crc >> 16); png[31] = (uint8_t)(crc >> 8); png[32] = (uint8_t)crc;
        vit_image img = {0};
        vit_image_alloc_hwm_reset();
        st = vit_image_decode(png, sizeof png, 0, &img, err, sizeof err);
        CHECK(st == VIT_E_IMAGE_CORRUPT && vit_image_alloc_hwm() < (1u << 20),
              "PNG chunk claiming 1.2 GB refused before libpng allocates it (largest allocation %zu): %s",
              vit_image_alloc_hwm(), err);
    }
    uint8_t exif_be[] = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0, 0, 0};
    CHECK(vit_exif_orientation(exif_be, sizeof exif_be) == 6, "big-endian EXIF orientation");
    exif_be[7] = 23;  /* IFD offset past the end */
    CHECK(vit_exif_orientation(exif_be, sizeof exif_be) == 1, "EXIF with its IFD past the end ignored");
    exif_be[7] = 8;
    CHECK(vit_exif_orientation(exif_be, 20) == 1, "EXIF cut inside its entry ignored");
}

/* tiny PIL resize cases */
static void test_resize_cases(void) {
    FILE *f = fopen(FIX "/resize_cases.txt", "r");
    CHECK(f != NULL, "resize_cases.txt present");
    if (!f) return;
    char name[64], tag[16];
    int rs, w, h, se, rw, rh, crop, ow, oh, hf, ncases = 0;
    while (fscanf(f, " case %63s %d %d %d %d %d %d %d %d %d %d", name, &rs, &w, &h, &se, &rw, &rh, &crop, &ow, &oh,
                  &hf) == 11) {
        ncases++;
        size_t nin = (size_t)w * h * 3, nout = (size_t)ow * oh * 3;
        uint8_t *in = malloc(nin);
        float *fl = malloc(nout * sizeof(float)), *u8 = malloc(nout * sizeof(float)), *out = malloc(nout * sizeof(float));
        int ok = fscanf(f, " %15s", tag) == 1 && !strcmp(tag, "in");
        for (size_t i = 0; ok && i < nin; i++) { int v; ok = fscanf(f, "%d", &v) == 1; in[i] = (uint8_t)v; }
        ok = ok && fscanf(f, " %15s", tag) == 1 && !strcmp(tag, "float");
        for (size_t i = 0; ok && i < nout; i++) ok = fscanf(f, "%f", &fl[i]) == 1;
        ok = ok && fscanf(f, " %15s", tag) == 1 && !strcmp(tag, "u8");
        for (size_t i = 0; ok && i < nout; i++) { int v; ok = fscanf(f, "%d", &v) == 1; u8[i] = (float)v; }
        if (!ok) { CHECK(0, "%s: malformed case", name); free(in); free(fl); free(u8); free(out); break; }
        vit_preprocess pp = {.do_resize = 1, .shortest_edge = se, .resize_h = rh, .resize_w = rw, .resample = rs,
                             .do_center_crop = crop, .crop_h = oh, .crop_w = ow, .out_h = oh, .out_w = ow,
                             .do_rescale = 0, .do_normalize = 0, .crop_floor = hf};
        vit_image img = {.width = w, .height = h, .rgb = in};
        char err[256];
        vit_status st = vit_image_to_tensor(&img, &pp, out, err, sizeof err);
        if (st) { CHECK(0, "%s: %s", name, err); }
        else {
            char label[128];
            snprintf(label, sizeof label, "resize %s %dx%d -> %dx%d vs PIL float", name, w, h, ow, oh);
            CHECK_CLOSE(out, fl, nout, 2e-3f, label);
            /* the AVX-512 horizontal pass (where the CPU has it) and the 4-float loop agree bit for bit */
            float *plain = malloc(nout * sizeof(float));
            vit_pp_set_simd(0);
            st = vit_image_to_tensor(&img, &pp, plain, err, sizeof err);
            vit_pp_set_simd(1);
            CHECK(st == VIT_OK && memcmp(plain, out, nout * sizeof(float)) == 0,
                  "resize %s: SIMD horizontal pass bit-identical to the plain one", name);
            free(plain);
            snprintf(label, sizeof label, "resize %s vs PIL uint8", name);
            CHECK_CLOSE(out, u8, nout, 1.05f, label);
            pp.pil_exact = 1;
            st = vit_image_to_tensor(&img, &pp, out, err, sizeof err);
            snprintf(label, sizeof label, "resize %s pil_exact == PIL uint8", name);
            if (st) CHECK(0, "%s: %s", label, err);
            else CHECK_CLOSE(out, u8, nout, 0.f, label);
        }
        free(in); free(fl); free(u8); free(out);
    }
    fclose(f);
    CHECK(ncases >= 12, "%d resize cases", ncases);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) { fputs(text, f); fclose(f); }
}

static void test_preprocess_load(void) {
    char dir[] = "/tmp/vit_pp_XXXXXX", path[256], err[512];
    if (!mkdtemp(dir)) { CHECK(0, "mkdtemp"); return; }
    vit_preprocess pp;
    snprintf(path, sizeof path, "%s/config.json", dir);
    /* no files at all: HF ViT default at 224 */
    vit_status st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.out_h == 224 && pp.resize_h == 224 && !pp.do_center_crop && pp.mean[0] == 0.5f &&
          pp.std[2] == 0.5f && pp.resample == VIT_RESAMPLE_BILINEAR, "default: 224 bilinear, mean = std = 0.5");
    write_text(path, "{\"image_size\": 384, \"hidden_size\": 768}");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.out_h == 384 && pp.out_w == 384 && pp.resize_w == 384, "default takes config.json image_size");
    st = vit_preprocess_load(dir, 160, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.out_h == 160 && pp.resize_w == 160, "default at a requested image size");
    /* timm */
    write_text(path, "{\"architecture\": \"vit_base_patch16_224\", \"pretrained_cfg\": {\"input_size\": [3, 224, 224],"
                     " \"interpolation\": \"bicubic\", \"crop_pct\": 0.9, \"mean\": [0.5, 0.5, 0.5], \"std\": [0.5, 0.5, 0.5]}}");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.shortest_edge == 248 && pp.out_h == 224 && pp.do_center_crop &&
          pp.resample == VIT_RESAMPLE_BICUBIC && pp.mean[1] == 0.5f, "timm: Resize(floor(224/0.9)=248) bicubic, crop 224 (%d)",
          pp.shortest_edge);
    st = vit_preprocess_load(dir, 384, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.shortest_edge == 426 && pp.out_h == 384, "timm at 384: Resize(426), crop 384 (%d)", pp.shortest_edge);
    write_text(path, "{\"pretrained_cfg\": {\"input_size\": [3, 224, 224], \"crop_pct\": 1.0}}");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.shortest_edge == 224 && pp.resample == VIT_RESAMPLE_BILINEAR &&
          fabsf(pp.mean[0] - 0.485f) < 1e-6f && fabsf(pp.std[2] - 0.225f) < 1e-6f, "timm defaults: bilinear, ImageNet mean/std");
    /* Hugging Face */
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    write_text(path, "{\"do_resize\": true, \"size\": {\"height\": 224, \"width\": 224}, \"resample\": 2,"
                     " \"do_normalize\": true, \"image_mean\": [0.5, 0.5, 0.5], \"image_std\": [0.5, 0.5, 0.5]}");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.resize_h == 224 && !pp.do_center_crop && pp.out_w == 224 && pp.do_rescale &&
          fabsf(pp.rescale_factor - 1.f / 255.f) < 1e-9f, "HF ViT preprocessor_config.json (wins over timm's config.json)");
    st = vit_preprocess_load(dir, 384, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.resize_h == 384 && pp.out_w == 384, "HF at 384");
    write_text(path, "{\"size\": 256, \"crop_size\": 224, \"do_center_crop\": true, \"resample\": 3, \"image_mean\": [0.1]}");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.resize_h == 256 && pp.out_h == 224 && pp.resample == 3 && pp.mean[2] == 0.1f,
          "HF integer size and crop_size, one-element mean");
    write_text(path, "{\"size\": {\"shortest_edge\": 224}, \"crop_pct\": 0.875, \"image_processor_type\": \"ConvNextImageProcessor\"}");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_OK && pp.shortest_edge == 256 && pp.out_h == 224 && pp.do_center_crop && pp.crop_floor,
          "HF crop_pct (ConvNeXt style), HF crop offsets for a named HF processor");
    write_text(path, "{\"size\": {\"height\": 224, \"width\": 224}, \"image_std\": [0, 1, 1]}");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_E_CONFIG, "zero std refused: %s", err);
    write_text(path, "{\"size\": {\"height\": -3, \"width\": 224}}");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_E_CONFIG, "negative size refused: %s", err);
    write_text(path, "{\"size\": ");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_E_CONFIG, "bad JSON refused: %s", err);
    write_text(path, "[1, 2]");
    st = vit_preprocess_load(dir, 0, &pp, err, sizeof err);
    CHECK(st == VIT_E_CONFIG, "non-object JSON refused");
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    test_manifest();
    test_decode_details();
    test_resize_cases();
    test_preprocess_load();
    return TEST_SUMMARY();
}
