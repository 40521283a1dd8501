/* image.c: untrusted bytes -> RGB8 pixels.  JPEG through libjpeg(-turbo)'s own API, PNG through
 * libpng; format sniffed from magic bytes only.  Every decoder error is trapped with
 * setjmp/longjmp (never exit()), the pixel count is checked against the cap from the header
 * before any pixel buffer exists, and every error path frees what it allocated.
 *
 * What the pixels look like (the same as PIL + ImageOps.exif_transpose + convert("RGB"),
 * with alpha composited over white):
 *   JPEG: YCbCr/RGB -> RGB, gray -> replicated, CMYK/YCCK -> RGB with Adobe (inverted)
 *         polarity, as PIL assumes; EXIF orientation (APP1) applied.
 *   PNG:  every color type and bit depth; palette + tRNS and gray/RGB tRNS -> alpha;
 *         16-bit -> 8-bit (high byte, as PIL); interlaced; eXIf orientation applied; alpha over white.
 * Optional DCT-domain downscaling (scale_num/8) for the fast path of vit_image_load. */
#include <ctype.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

#include "image/image_internal.h"
#include "util.h"

#define JPEG_MAX_WARNINGS 1000  /* corrupt-data warnings tolerated before giving up */

/* Largest single allocation this thread's decoder made since the last reset (pixel buffers and
 * every libpng allocation): lets tests prove that a hostile header is refused before any
 * pixel-sized buffer exists.  Thread-local, so no synchronization on the decode path. */
static _Thread_local size_t alloc_hwm;
void vit_image_alloc_hwm_reset(void) { alloc_hwm = 0; }
size_t vit_image_alloc_hwm(void) { return alloc_hwm; }
static void *img_malloc(size_t n) {
    if (n > alloc_hwm) alloc_hwm = n;
    return malloc(n);
}
static void *img_realloc(void *p, size_t n) {
    if (n > alloc_hwm) alloc_hwm = n;
    return realloc(p, n);
}
static png_voidp png_on_malloc(png_structp png, png_alloc_size_t n) { (void)png; return img_malloc(n); }
static void png_on_free(png_structp png, png_voidp p) { (void)png; free(p); }

vit_image_format vit_image_sniff(const void *data, size_t len) {
    const uint8_t *p = data;
    if (!p) return VIT_FMT_UNKNOWN;
    if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return VIT_FMT_JPEG;
    if (len >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return VIT_FMT_PNG;
    return VIT_FMT_UNKNOWN;
}

void vit_image_free(vit_image *img) {
    if (!img) return;
    free(img->rgb);
    img->rgb = NULL;
    img->width = img->height = 0;
}

/* ---- EXIF orientation ------------------------------------------------------------------- */

static unsigned rd16(const uint8_t *p, int be) { return be ? (unsigned)p[0] << 8 | p[1] : (unsigned)p[1] << 8 | p[0]; }
static uint32_t rd32(const uint8_t *p, int be) {
    return be ? (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]
              : (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* Orientation (1..8) from a TIFF-structured EXIF block (starting at "II*\0" / "MM\0*"); 1 if
 * absent or malformed.  Every offset is checked against len. */
int vit_exif_orientation(const uint8_t *t, size_t len) {
    if (len < 8) return 1;
    int be;
    if (t[0] == 'I' && t[1] == 'I') be = 0;
    else if (t[0] == 'M' && t[1] == 'M') be = 1;
    else return 1;
    if (rd16(t + 2, be) != 42) return 1;
    uint32_t ifd = rd32(t + 4, be);
    if (ifd > len - 2) return 1;
    unsigned n = rd16(t + ifd, be);
    for (unsigned i = 0; i < n; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > len) return 1;
        if (rd16(t + e, be) == 0x0112) {
            unsigned type = rd16(t + e + 2, be);
            unsigned v = type == 3 ? rd16(t + e + 8, be) : type == 4 ? (unsigned)rd32(t + e + 8, be) : 1;
            return v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

/* First APP1 "Exif\0\0" segment between SOI and SOS; no allocation. */
static int jpeg_orientation(const uint8_t *p, size_t len) {
    size_t i = 2;
    while (i + 4 <= len) {
        if (p[i] != 0xFF) return 1;
        uint8_t m = p[i + 1];
        if (m == 0xFF) { i++; continue; }                  /* fill byte */
        if (m == 0xD8 || (m >= 0xD0 && m <= 0xD7) || m == 0x01) { i += 2; continue; }
        if (m == 0xDA || m == 0xD9) return 1;              /* SOS / EOI: no EXIF before data */
        size_t seg = (size_t)p[i + 2] << 8 | p[i + 3];
        if (seg < 2 || i + 2 + seg > len) return 1;
        if (m == 0xE1 && seg >= 2 + 6 + 8 && !memcmp(p + i + 4, "Exif\0\0", 6))
            return vit_exif_orientation(p + i + 10, seg - 8);
        i += 2 + seg;
    }
    return 1;
}

/* Apply orientation o (PIL's exif_transpose) to a w x h RGB8 image; replaces img->rgb. */
static vit_status apply_orientation(vit_image *img, int o, char *err, size_t errlen) {
    if (o <= 1 || o > 8) return VIT_OK;
    const int W = img->width, H = img->height;
    const ptrdiff_t w = W, h = H;
    /* source pixel of destination (dx, dy) = origin + dx*sx + dy*sy (in pixels) */
    ptrdiff_t origin, sx, sy;
    int dw = W, dh = H;
    switch (o) {
    case 2: origin = w - 1;             sx = -1; sy = w;  break;  /* mirror left-right */
    case 3: origin = (h - 1) * w + w - 1; sx = -1; sy = -w; break; /* rotate 180 */
    case 4: origin = (h - 1) * w;       sx = 1;  sy = -w; break;  /* mirror top-bottom */
    case 5: origin = 0;                 sx = w;  sy = 1;  break;  /* transpose */
    case 6: origin = (h - 1) * w;       sx = -w; sy = 1;  break;  /* rotate 90 clockwise */
    case 7: origin = (h - 1) * w + w - 1; sx = -w; sy = -1; break; /* transverse */
    default: origin = w - 1;            sx = w;  sy = -1; break;  /* 8: rotate 90 counter-clockwise */
    }
    if (o >= 5) { dw = H; dh = W; }
    uint8_t *dst = img_malloc((size_t)W * H * 3);
    if (!dst) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory rotating a %dx%d image", W, H);
    const uint8_t *src = img->rgb;
    for (int dy = 0; dy < dh; dy++) {
        ptrdiff_t s = origin + dy * sy;
        uint8_t *d = dst + (size_t)dy * dw * 3;
        for (int dx = 0; dx < dw; dx++, s += sx, d += 3) {
            const uint8_t *q = src + s * 3;
            d[0] = q[0]; d[1] = q[1]; d[2] = q[2];
        }
    }
    free(img->rgb);
    img->rgb = dst;
    img->width = dw;
    img->height = dh;
    return VIT_OK;
}

vit_status vit_image_check_pixels(uint64_t w, uint64_t h, uint64_t max_pixels, const char *what, char *err,
                                  size_t errlen) {
    if (w == 0 || h == 0) return vit_errf(VIT_E_IMAGE_CORRUPT, err, errlen, "%s: zero size (%llux%llu)", what,
                                          (unsigned long long)w, (unsigned long long)h);
    if (max_pixels == 0) max_pixels = VIT_DEFAULT_MAX_PIXELS;
    if (w * h > max_pixels)
        return vit_errf(VIT_E_IMAGE_TOO_LARGE, err, errlen, "image too large: %s is %llux%llu = %llu pixels, more than the limit of %llu",
                        what, (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                        (unsigned long long)max_pixels);
    return VIT_OK;
}

/* ---- JPEG ------------------------------------------------------------------------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    int warnings;
    int truncated;
    int max_scans;                  /* the scans vit_image_cost counted (within the limit) */
    const vit_decode_limits *lim;   /* cancellation; may be NULL */
    vit_status st;                  /* what a longjmp reports (VIT_E_IMAGE_CORRUPT unless set) */
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_on_error(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    c->err->format_message(c, e->msg);
    longjmp(e->jb, 1);
}

static void jpeg_on_message(j_common_ptr c, int level) {
    jpeg_err *e = (jpeg_err *)c->err;
    if (level >= 0) return;  /* trace messages */
    /* warnings: premature end of data is fatal (PIL refuses truncated files too); other corrupt-data
     * warnings are tolerated (as PIL does) up to a bound */
    if (c->err->msg_code == JWRN_JPEG_EOF) e->truncated = 1;
    if (e->truncated || ++e->warnings > JPEG_MAX_WARNINGS) {
        if (e->truncated) snprintf(e->msg, sizeof e->msg, "truncated JPEG (premature end of data)");
        else snprintf(e->msg, sizeof e->msg, "too many corrupt-data warnings");
        longjmp(e->jb, 1);
    }
}

/* libjpeg calls this per iMCU row of every pass: the scan count may not pass what the header
 * check counted (the cost was charged for those), and a cancelled request stops here */
static void jpeg_on_progress(j_common_ptr c) {
    if (!c->is_decompressor) return;
    j_decompress_ptr d = (j_decompress_ptr)c;
    jpeg_err *e = (jpeg_err *)c->err;
    if (d->input_scan_number > e->max_scans) {
        e->st = VIT_E_IMAGE_POLICY;
        snprintf(e->msg, sizeof e->msg, "JPEG with more than %d scans (more than its structure showed)", e->max_scans);
        longjmp(e->jb, 1);
    }
    if (e->lim && e->lim->cancelled && e->lim->cancelled(e->lim->ctx)) {
        e->st = VIT_E_CANCELLED;
        snprintf(e->msg, sizeof e->msg, "decode cancelled");
        longjmp(e->jb, 1);
    }
}

/* Map a point between stored and shown (oriented) coordinates; W x H are the stored sizes.
 * to_shown: stored (x, y) -> shown; otherwise shown -> stored. */
static void orient_point(int o, int W, int H, int to_shown, int x, int y, int *ox, int *oy) {
    if (to_shown) {
        switch (o) {
        case 2: *ox = W - 1 - x; *oy = y; return;
        case 3: *ox = W - 1 - x; *oy = H - 1 - y; return;
        case 4: *ox = x; *oy = H - 1 - y; return;
        case 5: *ox = y; *oy = x; return;
        case 6: *ox = H - 1 - y; *oy = x; return;
        case 7: *ox = H - 1 - y; *oy = W - 1 - x; return;
        case 8: *ox = y; *oy = W - 1 - x; return;
        default: *ox = x; *oy = y; return;
        }
    }
    switch (o) {
    case 2: *ox = W - 1 - x; *oy = y; return;
    case 3: *ox = W - 1 - x; *oy = H - 1 - y; return;
    case 4: *ox = x; *oy = H - 1 - y; return;
    case 5: *ox = y; *oy = x; return;
    case 6: *ox = y; *oy = H - 1 - x; return;
    case 7: *ox = W - 1 - y; *oy = H - 1 - x; return;
    case 8: *ox = W - 1 - y; *oy = x; return;
    default: *ox = x; *oy = y; return;
    }
}

/* the rectangle [x0, x1) x [y0, y1) mapped through orient_point */
static void orient_rect(int o, int W, int H, int to_shown, int *x0, int *y0, int *x1, int *y1) {
    int ax, ay, bx, by;
    orient_point(o, W, H, to_shown, *x0, *y0, &ax, &ay);
    orient_point(o, W, H, to_shown, *x1 - 1, *y1 - 1, &bx, &by);
    *x0 = ax < bx ? ax : bx;
    *x1 = (ax > bx ? ax : bx) + 1;
    *y0 = ay < by ? ay : by;
    *y1 = (ay > by ? ay : by) + 1;
}

#define JPEG_REGION_MARGIN 16  /* decoded beyond the requested region: upsampling context */

/* libjpeg's error manager for one decode: errors and fatal warnings longjmp to e->jb */
static void jpeg_err_init(jpeg_err *e, j_decompress_ptr ci, int max_scans, const vit_decode_limits *lim) {
    memset(e, 0, sizeof *e);
    e->max_scans = max_scans;
    e->lim = lim;
    e->st = VIT_E_IMAGE_CORRUPT;
    ci->err = jpeg_std_error(&e->pub);
    e->pub.error_exit = jpeg_on_error;
    e->pub.emit_message = jpeg_on_message;
}

/* The output color space: gray and CMYK/YCCK come out as such (1 and 4 bytes per pixel) and are
 * converted by jpeg_to_rgb; the rest as RGB. */
static void jpeg_out_space(j_decompress_ptr ci, int *gray, int *cmyk) {
    *gray = *cmyk = 0;
    switch (ci->jpeg_color_space) {
    case JCS_GRAYSCALE: ci->out_color_space = JCS_GRAYSCALE; *gray = 1; break;
    case JCS_CMYK: case JCS_YCCK: ci->out_color_space = JCS_CMYK; *cmyk = 1; break;
    default: ci->out_color_space = JCS_RGB; break;
    }
}

/* DCT-domain downscaling toward o's minimum size: only for images at least twice the minimum;
 * then the largest reduction that keeps both sides >= the minimum (libjpeg rounds scaled sizes
 * up) */
static void jpeg_pick_scale(j_decompress_ptr ci, const vit_decode_opts *o) {
    const int min_w = o ? o->min_w : 0, min_h = o ? o->min_h : 0;
    if (!(min_w > 0 && min_h > 0 && ci->image_width >= 2u * (unsigned)min_w && ci->image_height >= 2u * (unsigned)min_h))
        return;
    for (int num = 1; num < 8; num *= 2) {  /* 1/8, 1/4, 1/2: libjpeg-turbo's SIMD reduced IDCTs */
        uint64_t sw = ((uint64_t)ci->image_width * num + 7) / 8;
        uint64_t sh = ((uint64_t)ci->image_height * num + 7) / 8;
        if (sw >= (uint64_t)min_w && sh >= (uint64_t)min_h) {
            ci->scale_num = (unsigned)num;
            ci->scale_denom = 8;
            break;
        }
    }
}

/* The stored rows [*y0, *y1) and columns [*cx, *cx + *cw) to decode out of the W x H output: the
 * region o asks for in the shown (oriented) image, mapped back, widened by JPEG_REGION_MARGIN and
 * by libjpeg to iMCU boundaries; everything when o asks for none (or an invalid one). */
static void jpeg_region(j_decompress_ptr ci, const vit_decode_opts *o, int orient, int W, int H, JDIMENSION *cx,
                        JDIMENSION *cw, int *y0, int *y1) {
    const int SW = orient >= 5 ? H : W, SH = orient >= 5 ? W : H;  /* shown size */
    int x0 = 0, x1 = W;
    *y0 = 0;
    *y1 = H;
    if (o && o->region && o->region(o->ctx, SW, SH, &x0, y0, &x1, y1) && x0 >= 0 && *y0 >= 0 && x1 <= SW &&
        *y1 <= SH && x0 < x1 && *y0 < *y1) {
        orient_rect(orient, W, H, 0, &x0, y0, &x1, y1);
        x0 = x0 > JPEG_REGION_MARGIN ? x0 - JPEG_REGION_MARGIN : 0;
        *y0 = *y0 > JPEG_REGION_MARGIN ? *y0 - JPEG_REGION_MARGIN : 0;
        x1 = x1 + JPEG_REGION_MARGIN < W ? x1 + JPEG_REGION_MARGIN : W;
        *y1 = *y1 + JPEG_REGION_MARGIN < H ? *y1 + JPEG_REGION_MARGIN : H;
    } else {
        x0 = *y0 = 0;
        x1 = W;
        *y1 = H;
    }
    *cx = (JDIMENSION)x0;
    *cw = (JDIMENSION)(x1 - x0);
    if (*cw < (JDIMENSION)W) jpeg_crop_scanline(ci, cx, cw);  /* widens to iMCU boundaries */
    else { *cx = 0; *cw = (JDIMENSION)W; }
}

/* RW x RH decoded pixels at `stride` bytes a row to RGB8 in place: gray rows expanded, CMYK
 * converted as PIL does; RGB as it is */
static void jpeg_to_rgb(uint8_t *p, int RW, int RH, size_t stride, int gray, int cmyk) {
    const size_t n = (size_t)RW * RH;
    if (gray) {
        /* rows are RW bytes at a stride of 3 * RW: expand each in place, back to front */
        for (int y = 0; y < RH; y++) {
            uint8_t *r = p + (size_t)y * stride;
            for (int x = RW - 1; x >= 0; x--) { uint8_t v = r[x]; r[3 * x] = r[3 * x + 1] = r[3 * x + 2] = v; }
        }
    } else if (cmyk) {
        /* PIL: CMYK;I (Adobe polarity, stored inverted), then R = (255 - C)(255 - K)/255 */
        for (size_t i = 0; i < n; i++) {
            const uint8_t *s = p + 4 * i;
            unsigned c = 255u - s[0], m = 255u - s[1], yy = 255u - s[2], k = 255u - s[3];
            unsigned nk = 255u - k, t;
            uint8_t *d = p + 3 * i;
            /* MULDIV255 as PIL computes it: ((a*b + 128) + ((a*b + 128) >> 8)) >> 8 */
            t = c * nk + 128;  d[0] = (uint8_t)(nk - ((t + (t >> 8)) >> 8));
            t = m * nk + 128;  d[1] = (uint8_t)(nk - ((t + (t >> 8)) >> 8));
            t = yy * nk + 128; d[2] = (uint8_t)(nk - ((t + (t >> 8)) >> 8));
        }
    }
}

/* Decode a JPEG (see vit_image_decode_region). */
static vit_status decode_jpeg(const uint8_t *data, size_t len, uint64_t max_pixels, int max_scans,
                              const vit_decode_opts *o, vit_region_image *out, char *err, size_t errlen) {
    struct jpeg_decompress_struct cinfo;
    jpeg_err jerr;
    struct jpeg_progress_mgr prog;
    /* volatile: modified between setjmp and a possible longjmp */
    uint8_t *volatile pix = NULL;
    jpeg_err_init(&jerr, &cinfo, max_scans, o ? o->lim : NULL);
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        free(pix);
        if (jerr.st != VIT_E_IMAGE_CORRUPT) return vit_errf(jerr.st, err, errlen, "%s", jerr.msg);
        return vit_errf(VIT_E_IMAGE_CORRUPT, err, errlen, "corrupt JPEG: %s", jerr.msg);
    }
    jpeg_create_decompress(&cinfo);
    prog.progress_monitor = jpeg_on_progress;
    cinfo.progress = &prog;
    jpeg_mem_src(&cinfo, (const unsigned char *)data, (unsigned long)len);
    jpeg_read_header(&cinfo, TRUE);
    vit_status st = vit_image_check_pixels(cinfo.image_width, cinfo.image_height, max_pixels, "JPEG", err, errlen);
    if (st) {
        jpeg_destroy_decompress(&cinfo);
        return st;
    }
    int cmyk, gray;
    jpeg_out_space(&cinfo, &gray, &cmyk);
    jpeg_pick_scale(&cinfo, o);
    const int orient = jpeg_orientation(data, len);
    jpeg_start_decompress(&cinfo);
    const int W = (int)cinfo.output_width, H = (int)cinfo.output_height, C = cinfo.output_components;
    if (C != (gray ? 1 : cmyk ? 4 : 3)) {
        snprintf(jerr.msg, sizeof jerr.msg, "unexpected %d output components", C);
        longjmp(jerr.jb, 1);
    }
    JDIMENSION cx, cw;
    int y0, y1;
    jpeg_region(&cinfo, o, orient, W, H, &cx, &cw, &y0, &y1);
    const int RW = (int)cw, RH = y1 - y0;
    /* decode in place: rows are C bytes per pixel, expanded to RGB afterwards (C <= 4) */
    size_t stride = (size_t)RW * (size_t)(C > 3 ? C : 3);
    pix = img_malloc(stride * (size_t)RH + 4);
    if (!pix) {
        snprintf(jerr.msg, sizeof jerr.msg, "out of memory for %dx%d pixels", RW, RH);
        longjmp(jerr.jb, 1);
    }
    if (y0 > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)y0);
    while ((int)cinfo.output_scanline < y1) {
        JSAMPROW rowp[4];
        int k = 0;
        for (; k < 4 && (int)cinfo.output_scanline + k < y1; k++)
            rowp[k] = pix + (size_t)((int)cinfo.output_scanline + k - y0) * stride;
        if (jpeg_read_scanlines(&cinfo, rowp, (JDIMENSION)k) == 0) {
            snprintf(jerr.msg, sizeof jerr.msg, "decoder stalled");
            longjmp(jerr.jb, 1);
        }
    }
    /* the rest is still entropy-decoded: a file cut below the region is refused like PIL does */
    if (y1 < H) jpeg_skip_scanlines(&cinfo, (JDIMENSION)(H - y1));
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);

    uint8_t *p = pix;
    jpeg_to_rgb(p, RW, RH, stride, gray, cmyk);
    out->img.width = RW;
    out->img.height = RH;
    out->img.rgb = p;
    st = apply_orientation(&out->img, orient, err, errlen);
    if (st) { vit_image_free(&out->img); return st; }
    int sx0 = (int)cx, sy0 = y0, sx1 = (int)cx + RW, sy1 = y1;
    orient_rect(orient, W, H, 1, &sx0, &sy0, &sx1, &sy1);
    out->x0 = sx0;
    out->y0 = sy0;
    out->full_w = orient >= 5 ? H : W;
    out->full_h = orient >= 5 ? W : H;
    return VIT_OK;
}

/* ---- PNG -------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t len, off;
    char msg[200];
    jmp_buf jb;
} png_src;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_src *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    longjmp(s->jb, 1);
}
static void png_on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void png_read_mem(png_structp png, png_bytep buf, size_t n) {
    png_src *s = png_get_io_ptr(png);
    if (n > s->len - s->off) png_error(png, "truncated PNG (premature end of data)");
    memcpy(buf, s->p + s->off, n);
    s->off += n;
}

/* Every chunk before the image data must fit in the file: libpng allocates an ancillary chunk's
 * declared length (up to 2^31 - 1) before it reads the data, so a 100-byte PNG whose eXIf chunk
 * claims 1.2 GB made png_read_info allocate 1.2 GB (fuzzer).  0, or -1 with the reason in msg. */
static int png_check_chunks(const uint8_t *p, size_t len, char *msg, size_t msglen) {
    size_t off = 8;                                    /* after the signature */
    while (off + 8 <= len) {
        uint32_t n = (uint32_t)p[off] << 24 | (uint32_t)p[off + 1] << 16 | (uint32_t)p[off + 2] << 8 | p[off + 3];
        const uint8_t *type = p + off + 4;
        if (!memcmp(type, "IDAT", 4) || !memcmp(type, "IEND", 4)) return 0;
        if ((uint64_t)n + 4 > len - off - 8) {
            snprintf(msg, msglen, "truncated or corrupt PNG: chunk '%c%c%c%c' of %u bytes runs past the end of the "
                     "%zu-byte file", isprint(type[0]) ? type[0] : '?', isprint(type[1]) ? type[1] : '?',
                     isprint(type[2]) ? type[2] : '?', isprint(type[3]) ? type[3] : '?', n, len);
            return -1;
        }
        off += (size_t)n + 12;
    }
    return 0;                                          /* libpng reports the truncation */
}

/* png_read_image, row by row, polling lim's cancellation every 64 rows */
static void png_read_polled(png_structp png, png_bytep *rows, png_uint_32 H, int passes, const vit_decode_limits *lim,
                          png_src *src, volatile vit_status *st) {
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < H; y++) {
            if ((y & 63) == 0 && lim && lim->cancelled && lim->cancelled(lim->ctx)) {
                *st = VIT_E_CANCELLED;
                snprintf(src->msg, sizeof src->msg, "decode cancelled");
                longjmp(src->jb, 1);
            }
            png_read_row(png, rows[y], NULL);
        }
}

/* libpng's input and limits: the file in memory, no CRC checks in fuzz builds, the pixel cap
 * (checked by the caller) instead of libpng's own, bounded ancillary chunks */
static void png_setup_read(png_structp png, png_src *src) {
    png_set_read_fn(png, src, png_read_mem);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* fuzz builds only (tests/fuzz): a mutated header chunk keeps its old CRC, and checking it
     * would stop the fuzzer at every IHDR/PLTE/tRNS mutation */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
#endif
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);  /* the pixel cap below is the real limit */
    png_set_chunk_cache_max(png, 1000);                  /* ancillary chunks kept */
    png_set_chunk_malloc_max(png, 8u << 20);             /* bytes per ancillary chunk */
}

/* the EXIF orientation of an eXIf chunk, 1 without one */
static int png_orientation(png_structp png, png_infop info) {
    int orientation = 1;
#ifdef PNG_eXIf_SUPPORTED
    png_uint_32 exif_len = 0;
    png_bytep exif = NULL;
    if (png_get_eXIf_1(png, info, &exif_len, &exif) && exif) orientation = vit_exif_orientation(exif, exif_len);
#else
    (void)png; (void)info;
#endif
    return orientation;
}

/* The transformations to 8-bit RGB or RGBA (palette, low-depth gray, tRNS, 16 bits: the high
 * byte as PIL reads them, gray to RGB); returns the interlace passes. */
static int png_to_rgb8(png_structp png, png_infop info, int depth, int ctype) {
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (depth == 16) png_set_strip_16(png);  /* high byte, as PIL reads 16-bit color PNGs */
    if (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    const int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    return passes;
}

/* n RGBA pixels -> RGB over white, in place (front to back: the write never passes the read);
 * the buffer shrunk to fit when it can be */
static uint8_t *rgba_over_white(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const uint8_t *s = p + 4 * i;
        unsigned a = s[3], na = 255u - a;
        uint8_t *d = p + 3 * i;
        d[0] = (uint8_t)((s[0] * a + 255u * na + 127u) / 255u);
        d[1] = (uint8_t)((s[1] * a + 255u * na + 127u) / 255u);
        d[2] = (uint8_t)((s[2] * a + 255u * na + 127u) / 255u);
    }
    uint8_t *q = img_realloc(p, n * 3);
    return q ? q : p;
}

static vit_status decode_png(const uint8_t *data, size_t len, uint64_t max_pixels, const vit_decode_limits *lim,
                             vit_image *out, char *err, size_t errlen) {
    char cmsg[160];
    if (png_check_chunks(data, len, cmsg, sizeof cmsg)) return vit_errf(VIT_E_IMAGE_CORRUPT, err, errlen, "%s", cmsg);
    png_src src = {.p = data, .len = len};
    png_structp png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning,
                                               NULL, png_on_malloc, png_on_free);
    if (!png) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory (libpng)");
    png_infop info = png_create_info_struct(png);
    uint8_t *volatile pix = NULL;
    png_bytep *volatile rows = NULL;
    volatile vit_status st = VIT_E_IMAGE_CORRUPT;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory (libpng)");
    }
    if (setjmp(src.jb)) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pix);
        free(rows);
        if (st == VIT_E_IMAGE_CORRUPT) vit_errf(st, err, errlen, "corrupt PNG: %s", src.msg);
        if (st == VIT_E_CANCELLED) vit_errf(st, err, errlen, "%s", src.msg);
        return st;
    }
    png_setup_read(png, &src);
    png_read_info(png, info);
    png_uint_32 W, H;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &W, &H, &depth, &ctype, &interlace, NULL, NULL);
    st = vit_image_check_pixels(W, H, max_pixels, "PNG", err, errlen);
    if (st) longjmp(src.jb, 1);
    st = VIT_E_IMAGE_CORRUPT;
    /* the header's CRCs were checked; the image data's are not (as PIL does not): zlib's
     * Adler-32 still checks every decompressed byte, and skipping CRC-32 saves ~5% */
    png_set_crc_action(png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
    const int orientation = png_orientation(png, info);
    const int passes = png_to_rgb8(png, info, depth, ctype);
    int C = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if ((C != 3 && C != 4) || png_get_bit_depth(png, info) != 8 || rowbytes != (size_t)W * (size_t)C) {
        snprintf(src.msg, sizeof src.msg, "unexpected pixel layout after conversion (%d channels)", C);
        longjmp(src.jb, 1);
    }
    pix = img_malloc(rowbytes * H);
    rows = img_malloc(sizeof(png_bytep) * H);
    if (!pix || !rows) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "out of memory for %ux%u pixels", (unsigned)W, (unsigned)H);
        longjmp(src.jb, 1);
    }
    for (png_uint_32 y = 0; y < H; y++) rows[y] = pix + (size_t)y * rowbytes;
    png_read_polled(png, rows, H, passes, lim, &src, &st);
    /* no png_read_end: what follows the image data (IEND, text) is not needed */
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    rows = NULL;
    uint8_t *p = pix;
    if (C == 4) p = rgba_over_white(p, (size_t)W * H);
    out->width = (int)W;
    out->height = (int)H;
    out->rgb = p;
    vit_status st2 = apply_orientation(out, orientation, err, errlen);
    if (st2) vit_image_free(out);
    return st2;
}

/* ---- entry points ----------------------------------------------------------------------- */

vit_status vit_image_decode_region(const void *data, size_t len, uint64_t max_pixels, const vit_decode_opts *o,
                                   vit_region_image *out, char *err, size_t errlen) {
    if (!out) return vit_errf(VIT_E_ARG, err, errlen, "no output image");
    memset(out, 0, sizeof *out);
    if (!data || len == 0) return vit_errf(VIT_E_IMAGE_CORRUPT, err, errlen, "empty image");
    if (max_pixels > ((uint64_t)1 << 40)) max_pixels = (uint64_t)1 << 40;
    const vit_decode_limits *lim = o ? o->lim : NULL;
    vit_decode_limits hl = lim ? *lim : (vit_decode_limits){0};
    hl.max_pixels = max_pixels;
    vit_image_format fmt = vit_image_sniff(data, len);
    uint64_t cost = 0;
    int scans = 0;
    vit_status st = VIT_OK;
    if (fmt != VIT_FMT_UNKNOWN) {   /* the header check: size, structure and cost before pixel work */
        st = vit_image_cost_scans(data, len, &hl, &cost, &scans, err, errlen);
        if (st) return st;
        if (lim && lim->charge && lim->charge(lim->ctx, cost))
            return vit_errf(VIT_E_IMAGE_COST, err, errlen, "the request's decode budget is spent: this image "
                            "(%llu M samples) would take it over", (unsigned long long)((cost + 999999) / 1000000));
    }
    switch (fmt) {
    case VIT_FMT_JPEG: return decode_jpeg(data, len, max_pixels, scans, o, out, err, errlen);
    case VIT_FMT_PNG:
        st = decode_png(data, len, max_pixels, lim, &out->img, err, errlen);
        out->full_w = out->img.width;
        out->full_h = out->img.height;
        return st;
    default: break;
    }
    const uint8_t *p = data;
    const char *what = "unknown";
    if (len >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) what = "GIF";
    else if (len >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) what = "WebP";
    else if (len >= 2 && p[0] == 'B' && p[1] == 'M') what = "BMP";
    else if (len >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4))) what = "TIFF";
    else if (len >= 12 && !memcmp(p + 4, "ftyp", 4)) what = "HEIF/AVIF";
    return vit_errf(VIT_E_IMAGE_FORMAT, err, errlen, "unsupported image format (%s; JPEG and PNG are supported)", what);
}

vit_status vit_image_decode(const void *data, size_t len, uint64_t max_pixels, vit_image *out,
                            char *err, size_t errlen) {
    if (!out) return vit_errf(VIT_E_ARG, err, errlen, "no output image");
    vit_region_image r;
    vit_status st = vit_image_decode_region(data, len, max_pixels, NULL, &r, err, errlen);
    *out = r.img;
    return st;
}
