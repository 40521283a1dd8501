/* test_decode_cost.c: the decode cost budget (vit_image_cost, vit_image_load_limited).
 *  - every good test image: a cost at least its output samples, decoded under a cap equal to its
 *    cost and refused (VIT_E_IMAGE_COST) under one sample less, before any pixel-sized buffer;
 *  - hostile files built here from the good ones: a progressive JPEG declaring 7000x7000 with
 *    300 empty scans (422 policy), the same with 90 scans and a DC scan padded to look complete
 *    (413 cost), a baseline JPEG whose SOF says 65500x763 and a PNG whose IHDR says 7000x7000
 *    over a few KB of data (corrupt: the data cannot back the size); none allocates pixels;
 *  - the request budget (charge callback) across images, and cancellation polled mid-decode
 *    (JPEG progress monitor, PNG rows).
 * Run from the repository root. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "harness.h"
#include "image/image_internal.h"
#include "util.h"

#define IMG "tests/data/images"

static uint8_t *slurp(const char *name, size_t *len) {
    char path[512], err[256];
    uint8_t *b;
    snprintf(path, sizeof path, "%s/%s", IMG, name);
    if (vit_read_file(path, (size_t)64 << 20, &b, len, err, sizeof err)) { printf("# %s\n", err); return NULL; }
    return b;
}

static vit_preprocess pp224(void) {
    vit_preprocess pp;
    memset(&pp, 0, sizeof pp);
    pp.do_resize = 1;
    pp.resize_h = pp.resize_w = 224;
    pp.resample = VIT_RESAMPLE_BILINEAR;
    pp.do_rescale = 1;
    pp.rescale_factor = 1.f / 255.f;
    pp.out_h = pp.out_w = 224;
    return pp;
}

/* offset of the first marker m (0xFFm) in the segment walk of a JPEG, or 0 */
static size_t jpeg_find(const uint8_t *p, size_t len, uint8_t m, int nth) {
    size_t i = 2;
    while (i + 4 <= len && p[i] == 0xFF) {
        if (p[i + 1] == m && nth-- == 0) return i;
        if (p[i + 1] == 0xDA) {                    /* skip the entropy-coded data */
            i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
            while (i + 1 < len && !(p[i] == 0xFF && p[i + 1] != 0 && (p[i + 1] < 0xD0 || p[i + 1] > 0xD7))) i++;
            continue;
        }
        i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]);
    }
    return 0;
}

static void set_sof(uint8_t *p, size_t len, unsigned w, unsigned h) {
    size_t s = jpeg_find(p, len, 0xC2, 0);
    if (!s) s = jpeg_find(p, len, 0xC0, 0);
    if (!s) return;
    p[s + 5] = (uint8_t)(h >> 8); p[s + 6] = (uint8_t)h;
    p[s + 7] = (uint8_t)(w >> 8); p[s + 8] = (uint8_t)w;
}

/* jpeg_progressive.jpg declaring w x h, with `extra` more copies of its first AC scan header (no
 * data) before EOI, and `pad` bytes added to the data of each scan that codes DC */
static uint8_t *prog_bomb(unsigned w, unsigned h, int extra, size_t pad, size_t *outlen) {
    size_t len;
    uint8_t *src = slurp("jpeg_progressive.jpg", &len);
    if (!src) return NULL;
    size_t sos[32], ac = 0;
    int nsos = 0;
    for (; nsos < 32 && (sos[nsos] = jpeg_find(src, len, 0xDA, nsos)); nsos++)
        if (!ac && src[sos[nsos] + 5 + 2 * src[sos[nsos] + 4]] > 0) ac = sos[nsos];   /* Ss > 0 */
    size_t aclen = ac ? 2 + ((size_t)src[ac + 2] << 8 | src[ac + 3]) : 0;
    uint8_t *o = malloc(len + (size_t)nsos * pad + (size_t)extra * aclen + 2);
    if (!o || !ac || len < 2) { free(src); free(o); return NULL; }
    size_t n = 0, from = 0;
    for (int k = 0; k < nsos; k++) {
        size_t s = sos[k], data = s + 2 + ((size_t)src[s + 2] << 8 | src[s + 3]);
        if (src[s + 5 + 2 * src[s + 4]] != 0) continue;
        memcpy(o + n, src + from, data - from); n += data - from;
        memset(o + n, 0x55, pad); n += pad;
        from = data;
    }
    memcpy(o + n, src + from, len - 2 - from); n += len - 2 - from;
    for (int k = 0; k < extra; k++) { memcpy(o + n, src + ac, aclen); n += aclen; }
    o[n++] = 0xFF; o[n++] = 0xD9;
    set_sof(o, n, w, h);
    free(src);
    *outlen = n;
    return o;
}

/* decode under lim into a 224x224 tensor; the allocation high-water mark in *hwm */
static vit_status load(const uint8_t *d, size_t n, const vit_decode_limits *lim, size_t *hwm, char *err, size_t el) {
    static float x[3 * 224 * 224];
    vit_preprocess pp = pp224();
    vit_image_alloc_hwm_reset();
    err[0] = '\0';
    vit_status st = vit_image_load_limited(d, n, &pp, lim, x, err, el);
    if (hwm) *hwm = vit_image_alloc_hwm();
    return st;
}

static void test_good_images(void) {
    static const char *names[] = {"jpeg_baseline.jpg", "jpeg_progressive.jpg", "jpeg_gray.jpg", "jpeg_cmyk.jpg",
                                  "jpeg_444.jpg", "png_rgb.png", "png_interlaced.png", "png_rgb16.png",
                                  "png_palette4.png", "png_gray1.png"};
    char err[256];
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        size_t n, hwm = 0;
        uint8_t *d = slurp(names[i], &n);
        if (!d) { CHECK(0, "%s readable", names[i]); continue; }
        vit_image img;
        uint64_t cost = 0;
        vit_status st = vit_image_decode(d, n, 0, &img, err, sizeof err);
        vit_status sc = vit_image_cost(d, n, NULL, &cost, err, sizeof err);
        uint64_t px = st == VIT_OK ? (uint64_t)img.width * img.height : 0;
        CHECK(st == VIT_OK && sc == VIT_OK && cost >= px * 3 && cost <= px * 3 * 40,
              "%s cost=%llu samples for %llu pixels", names[i], (unsigned long long)cost, (unsigned long long)px);
        vit_image_free(&img);
        vit_decode_limits lim = {.max_cost = cost};
        st = load(d, n, &lim, NULL, err, sizeof err);
        CHECK(st == VIT_OK, "%s decodes under max_cost = its cost (%s)", names[i], st ? err : "ok");
        lim.max_cost = cost - 1;
        st = load(d, n, &lim, &hwm, err, sizeof err);
        CHECK(st == VIT_E_IMAGE_COST && hwm < px && strstr(err, "decode cost"),
              "%s refused under max_cost = cost - 1 before pixel work (hwm=%zu): %s", names[i], hwm, err);
        free(d);
    }
    /* a progressive file pays for its scans: more than the same pixels once */
    size_t nb, np;
    uint8_t *b = slurp("jpeg_baseline.jpg", &nb), *p = slurp("jpeg_progressive.jpg", &np);
    uint64_t cb = 0, cp = 0;
    if (b && p) { vit_image_cost(b, nb, NULL, &cb, err, sizeof err); vit_image_cost(p, np, NULL, &cp, err, sizeof err); }
    CHECK(cb > 0 && cp > cb, "progressive cost %llu > baseline %llu", (unsigned long long)cp, (unsigned long long)cb);
    free(b); free(p);
}

static void test_hostile(void) {
    char err[256];
    size_t n, hwm = 0;
    vit_decode_limits lim = {.max_cost = 1000000000ull};
    uint8_t *d = prog_bomb(7000, 7000, 300, 0, &n);
    vit_status st = d ? load(d, n, &lim, &hwm, err, sizeof err) : VIT_E_IO;
    CHECK(st == VIT_E_IMAGE_POLICY && hwm < ((size_t)1 << 20) && strstr(err, "scans"),
          "7000x7000 progressive, %zu bytes, 300 empty scans: policy before pixel work (hwm=%zu): %s", n, hwm, err);
    free(d);
    d = prog_bomb(7000, 7000, 80, 200000, &n);
    st = d ? load(d, n, &lim, &hwm, err, sizeof err) : VIT_E_IO;
    CHECK(st == VIT_E_IMAGE_COST && hwm < ((size_t)1 << 20),
          "7000x7000 progressive, 80 empty scans, padded DC scan (%zu bytes): cost (hwm=%zu): %s", n, hwm, err);
    uint64_t cost = 0;
    vit_decode_limits nolimit = {0};
    st = d ? vit_image_cost(d, n, &nolimit, &cost, err, sizeof err) : VIT_E_IO;
    CHECK(st == VIT_OK && cost > 80ull * 7000 * 7000, "its cost counts every scan: %llu M samples",
          (unsigned long long)(cost / 1000000));
    free(d);
    d = slurp("jpeg_baseline.jpg", &n);
    if (d) set_sof(d, n, 65500, 763);
    st = d ? load(d, n, &lim, &hwm, err, sizeof err) : VIT_E_IO;
    CHECK(st == VIT_E_IMAGE_CORRUPT && hwm < ((size_t)1 << 20) && strstr(err, "fewer than"),
          "baseline JPEG with SOF 65500x763 (%zu bytes): corrupt before pixel work (hwm=%zu): %s", n, hwm, err);
    free(d);
    d = slurp("png_rgb.png", &n);
    if (d && n > 33) {   /* IHDR 7000x7000 with a valid CRC */
        d[16] = d[17] = 0; d[18] = 7000 >> 8; d[19] = 7000 & 255;
        d[20] = d[21] = 0; d[22] = 7000 >> 8; d[23] = 7000 & 255;
        uint32_t crc = (uint32_t)crc32(0, d + 12, 17);
        d[29] = (uint8_t)(crc >> 24); d[30] = (uint8_t)(crc >> 16); d[31] = (uint8_t)(crc >> 8); d[32] = (uint8_t)crc;
    }
    st = d ? load(d, n, &lim, &hwm, err, sizeof err) : VIT_E_IO;
    CHECK(st == VIT_E_IMAGE_CORRUPT && hwm < ((size_t)1 << 20) && strstr(err, "cannot hold"),
          "PNG with IHDR 7000x7000 over %zu bytes: corrupt before pixel work (hwm=%zu): %s", n, hwm, err);
    free(d);
}

typedef struct { uint64_t spent, budget; int charges, polls, cancel_at; } budget_ctx;
static int charge(void *ctx, uint64_t cost) {
    budget_ctx *b = ctx;
    b->charges++;
    if (b->spent + cost > b->budget) return 1;
    b->spent += cost;
    return 0;
}
static int cancelled(void *ctx) {
    budget_ctx *b = ctx;
    return ++b->polls >= b->cancel_at && b->cancel_at > 0;
}

static void test_request_budget_and_cancel(void) {
    char err[256];
    size_t n;
    uint8_t *d = slurp("jpeg_rocket.jpg", &n);
    if (!d) { CHECK(0, "jpeg_rocket.jpg readable"); return; }
    uint64_t cost = 0;
    vit_image_cost(d, n, NULL, &cost, err, sizeof err);
    budget_ctx bc = {.budget = 2 * cost + cost / 2};
    vit_decode_limits lim = {.charge = charge, .cancelled = cancelled, .ctx = &bc};
    vit_status s1 = load(d, n, &lim, NULL, err, sizeof err);
    vit_status s2 = load(d, n, &lim, NULL, err, sizeof err);
    vit_status s3 = load(d, n, &lim, NULL, err, sizeof err);
    CHECK(s1 == VIT_OK && s2 == VIT_OK && s3 == VIT_E_IMAGE_COST && bc.charges == 3 && bc.spent == 2 * cost &&
          strstr(err, "request"), "a budget of 2.5 images: the third refused (%s)", err);
    CHECK(bc.polls > 10, "cancellation polled while decoding (%d polls for 2 images)", bc.polls);
    bc = (budget_ctx){.budget = UINT64_MAX, .cancel_at = 3};
    size_t hwm = 0;
    vit_status st = load(d, n, &lim, &hwm, err, sizeof err);
    CHECK(st == VIT_E_CANCELLED && bc.polls == 3, "JPEG cancelled at the 3rd poll: %s", err);
    free(d);
    d = slurp("png_interlaced.png", &n);
    if (!d) { CHECK(0, "png_interlaced.png readable"); return; }
    bc = (budget_ctx){.budget = UINT64_MAX, .cancel_at = 2};
    st = load(d, n, &lim, &hwm, err, sizeof err);
    CHECK(st == VIT_E_CANCELLED && bc.polls == 2, "PNG cancelled at the 2nd poll (row 64): %s", err);
    bc = (budget_ctx){.budget = UINT64_MAX};
    st = load(d, n, &lim, &hwm, err, sizeof err);
    CHECK(st == VIT_OK && bc.polls > 2, "PNG not cancelled: %d polls, %s", bc.polls, st ? err : "ok");
    free(d);
}

int main(void) {
    test_good_images();
    test_hostile();
    test_request_budget_and_cancel();
    return TEST_SUMMARY();
}
