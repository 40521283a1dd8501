/* fuzz_image.c: libFuzzer harness for the image pipeline on untrusted bytes: vit_image_sniff,
 * vit_image_decode (pixel cap from the header) + vit_image_to_tensor, and vit_image_load (the
 * server's path: region decode, and DCT-domain scaling in fast mode), with real preprocessing
 * settings (the shipped fashion-vit's and tiny-timm's, read by vit_preprocess_load) or settings
 * taken from the input.
 *
 * Input: 4 header bytes, then the image.
 *   h[0] bits 0-1: settings 0 fashion-vit (224 bilinear), 1 tiny-timm (bicubic, shortest edge +
 *                  crop), 2 Hugging Face default (224x224 bilinear, no crop), 3 from h[1..3]
 *        bit 2: API: 0 decode + to_tensor, 1 vit_image_load;  bit 3: fast (allow_dct_scaling);
 *        bit 4: pil_exact;  bit 5: crop_floor
 *   h[1]: resample (mod 6), bit 7: shortest-edge resize (with a crop only);  h[2]: resize size 1..128 (bit 7:
 *   no resize);  h[3]: output/crop size 1..64 (bit 7: no center crop).
 * The pixel cap is 4 Mpixel (the server's default is 50 M; the cap check itself is the same).
 * vit_image_load runs under a decode cost budget (vit_decode_limits: 64 M samples, 100 scans,
 * as the server's per-image budget but smaller): the cost charged must be what vit_image_cost
 * says, charged at most once, and a decoded image must have been charged within the cap. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "image/image_internal.h"
#include "vit.h"

#define FUZZ_MAX_PIXELS (4u << 20)
#define FUZZ_MAX_COST (64u << 20)

typedef struct { uint64_t charged; int charges, polls; } fuzz_budget;
static int fuzz_charge(void *ctx, uint64_t cost) {
    fuzz_budget *b = ctx;
    b->charged = cost;
    b->charges++;
    return 0;
}
static int fuzz_cancelled(void *ctx) { ((fuzz_budget *)ctx)->polls++; return 0; }

static vit_preprocess presets[3];
static float *tensor;   /* (3, 224, 224) at most */

static void init_once(void) {
    static int done;
    if (done) return;
    done = 1;
    char err[256];
    if (vit_preprocess_load("models/fashion-vit", 224, &presets[0], err, sizeof err) != VIT_OK ||
        vit_preprocess_load("tests/fixtures/models/tiny-timm", 0, &presets[1], err, sizeof err) != VIT_OK) {
        fprintf(stderr, "fuzz_image: run from the repository root (%s)\n", err);
        abort();
    }
    vit_preprocess *p = &presets[2];
    memset(p, 0, sizeof *p);
    p->do_resize = 1;
    p->resize_h = p->resize_w = 224;
    p->resample = VIT_RESAMPLE_BILINEAR;
    p->do_rescale = 1;
    p->rescale_factor = 1.f / 255.f;
    p->do_normalize = 1;
    for (int c = 0; c < 3; c++) p->mean[c] = p->std[c] = 0.5f;
    p->out_h = p->out_w = 224;
    tensor = malloc(sizeof(float) * 3 * 224 * 224);
    if (!tensor) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    if (size < 4) return 0;
    const uint8_t *h = data;
    data += 4;
    size -= 4;
    vit_preprocess pp;
    int preset = h[0] & 3;
    if (preset < 3) {
        pp = presets[preset];
    } else {
        memset(&pp, 0, sizeof pp);
        static const int resample[6] = {0, 1, 2, 3, 4, 5};
        pp.resample = resample[(h[1] & 0x7f) % 6];
        pp.do_resize = !(h[2] & 0x80);
        int rs = (h[2] & 0x7f) + 1, os = (h[3] & 0x3f) + 1;
        pp.do_center_crop = !(h[3] & 0x80) || !pp.do_resize;   /* as vit_preprocess_load: no resize, a crop */
        /* a shortest-edge resize gives a size that varies per image: only with a crop */
        if ((h[1] & 0x80) && pp.do_center_crop) pp.shortest_edge = rs;
        else pp.resize_h = pp.resize_w = rs;
        pp.crop_h = pp.crop_w = os;
        pp.out_h = pp.out_w = pp.do_center_crop ? os : rs;
        pp.do_rescale = 1;
        pp.rescale_factor = 1.f / 255.f;
        pp.do_normalize = 1;
        for (int c = 0; c < 3; c++) { pp.mean[c] = 0.5f; pp.std[c] = 0.25f; }
    }
    pp.allow_dct_scaling = (h[0] >> 3) & 1;
    pp.pil_exact = (h[0] >> 4) & 1;
    if (preset == 3) pp.crop_floor = (h[0] >> 5) & 1;
    if (pp.out_h > 224 || pp.out_w > 224) abort();   /* harness bug */

    char err[256] = "";
    vit_image_format fmt = vit_image_sniff(data, size);
    vit_status st;
    if (h[0] & 4) {
        fuzz_budget fb = {0};
        vit_decode_limits lim = {.max_pixels = FUZZ_MAX_PIXELS, .max_cost = FUZZ_MAX_COST, .max_scans = 100,
                                 .charge = fuzz_charge, .cancelled = fuzz_cancelled, .ctx = &fb};
        st = vit_image_load_limited(data, size, &pp, &lim, tensor, err, sizeof err);
        uint64_t cost = 0;
        char cerr[256];
        vit_status cst = vit_image_cost(data, size, &lim, &cost, cerr, sizeof cerr);
        if (fb.charges > 1) abort();                              /* charged once per image */
        if (st == VIT_OK && (fb.charges != 1 || cst != VIT_OK || fb.charged != cost || cost > FUZZ_MAX_COST))
            abort();                                              /* decoded: charged its cost, within the cap */
        if (fb.charges == 1 && cst != VIT_OK) abort();            /* charged only after the header check passed */
    } else {
        vit_image img;
        st = vit_image_decode(data, size, FUZZ_MAX_PIXELS, &img, err, sizeof err);
        if (st == VIT_OK) {
            if (img.width <= 0 || img.height <= 0 || (uint64_t)img.width * img.height > FUZZ_MAX_PIXELS || !img.rgb)
                abort();   /* a decoded image must respect the cap */
            st = vit_image_to_tensor(&img, &pp, tensor, err, sizeof err);
            vit_image_free(&img);
        } else if (img.rgb) {
            abort();       /* an error must not hand out pixels */
        }
    }
    /* every outcome is a status with a message; success only for a format we accept */
    if (st == VIT_OK && fmt == VIT_FMT_UNKNOWN) abort();
    if (st != VIT_OK && (st >= VIT_STATUS_COUNT || !err[0])) abort();
    /* bad input is the client's error (400/413/415), never an internal one (500) */
    if (st == VIT_E_INTERNAL || st == VIT_E_ARG) abort();
    return 0;
}
