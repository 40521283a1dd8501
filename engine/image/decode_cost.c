/* decode_cost.c: what decoding an untrusted JPEG/PNG will cost, from its bytes alone, before any
 * pixel work (vit_image_cost; the model is in vit.h above vit_decode_limits).
 *
 * JPEG: one walk over the marker structure (SOF, every SOS and the length of the entropy-coded
 * data behind it; no decoding): the frame's components and sampling give each component's 8x8
 * block count, every scan pays 64 samples per block of the components it codes, and a
 * Huffman-coded scan that codes DC (Ss = 0) must hold at least one bit per block.  The walk
 * counts scans the way libjpeg reads them (a marker inside entropy-coded data is 0xFF followed
 * by anything but 0x00, a fill 0xFF or RSTn); the decoder's progress monitor (image.c) refuses a
 * file in which libjpeg finds more scans than were counted here.
 * PNG: IHDR gives size, channels, depth and interlacing; the IDAT chunks' total length bounds
 * the raw bytes deflate can produce (at most 1032:1).
 * Nothing here allocates; every offset is checked against len. */
#include <stdio.h>
#include <string.h>

#include <zlib.h>

#include "image/image_internal.h"
#include "util.h"

#define DEFLATE_MAX_RATIO 1032u  /* deflate's largest expansion: 258 bytes from 2 bits */
#define JPEG_MAX_COMPONENTS 4    /* libjpeg-turbo's MAX_COMPONENTS is 10; we decode <= 4 */

typedef struct {
    int id, h, v;                /* component id, sampling factors */
    uint64_t blocks;             /* 8x8 blocks of this component */
} jpeg_comp;

typedef struct {
    uint32_t width, height;
    int ncomp, arithmetic, have_sof;
    jpeg_comp comp[JPEG_MAX_COMPONENTS];
    int scans;
    uint64_t scan_samples;       /* sum over scans of 64 x blocks coded */
    int short_scan;              /* first scan too short for its blocks (1-based), or 0 */
    uint64_t short_bytes, short_need;
} jpeg_census;

static unsigned be16(const uint8_t *p) { return (unsigned)p[0] << 8 | p[1]; }
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* SOFn segment (p at the marker, seg bytes after it): size, components and their blocks */
static int census_sof(jpeg_census *c, uint8_t m, const uint8_t *p, size_t seg) {
    if (c->have_sof || seg < 8) return -1;
    c->have_sof = 1;
    c->arithmetic = m >= 0xC9;
    c->height = be16(p + 5);
    c->width = be16(p + 7);
    int n = p[9];
    if (n < 1 || n > JPEG_MAX_COMPONENTS || seg < 8 + 3 * (size_t)n) return -1;
    int hmax = 1, vmax = 1;
    for (int i = 0; i < n; i++) {
        const uint8_t *q = p + 10 + 3 * i;
        c->comp[i].id = q[0];
        c->comp[i].h = q[1] >> 4;
        c->comp[i].v = q[1] & 15;
        if (c->comp[i].h < 1 || c->comp[i].v < 1) return -1;
        if (c->comp[i].h > hmax) hmax = c->comp[i].h;
        if (c->comp[i].v > vmax) vmax = c->comp[i].v;
    }
    for (int i = 0; i < n; i++) {   /* as libjpeg's width_in_blocks / height_in_blocks */
        uint64_t bw = ceil_div(ceil_div((uint64_t)c->width * c->comp[i].h, hmax), 8);
        uint64_t bh = ceil_div(ceil_div((uint64_t)c->height * c->comp[i].v, vmax), 8);
        c->comp[i].blocks = bw * bh;
    }
    c->ncomp = n;
    return 0;
}

/* bytes of entropy-coded data from p[i] up to the next marker; *next is that marker's offset */
static size_t entropy_len(const uint8_t *p, size_t len, size_t i, size_t *next) {
    size_t s = i;
    for (;;) {
        const uint8_t *f = i < len ? memchr(p + i, 0xFF, len - i) : NULL;
        if (!f || (size_t)(f - p) + 1 >= len) { *next = len; return len - s; }
        i = (size_t)(f - p);
        uint8_t b = p[i + 1];
        if (b == 0x00 || (b >= 0xD0 && b <= 0xD7)) { i += 2; continue; }  /* stuffing, RSTn */
        if (b == 0xFF) { i++; continue; }                                 /* fill byte */
        *next = i;
        return i - s;
    }
}

/* SOS segment: the blocks it codes, and for a Huffman scan that codes DC, the bits it needs */
static int census_sos(jpeg_census *c, const uint8_t *p, size_t seg, size_t data_bytes) {
    if (!c->have_sof || seg < 6) return -1;
    int ns = p[4];
    if (ns < 1 || seg < 6 + 2 * (size_t)ns) return -1;
    int ss = p[5 + 2 * ns];
    uint64_t blocks = 0;
    for (int k = 0; k < ns; k++)
        for (int i = 0; i < c->ncomp; i++)
            if (c->comp[i].id == p[5 + 2 * k]) blocks += c->comp[i].blocks;
    c->scans++;
    c->scan_samples += 64 * blocks;
    if (!c->arithmetic && ss == 0 && !c->short_scan && data_bytes * 8 < blocks) {
        c->short_scan = c->scans;
        c->short_bytes = data_bytes;
        c->short_need = ceil_div(blocks, 8);
    }
    return 0;
}

/* Walk the markers from SOI to EOI (or the end of the data). */
static void jpeg_walk(const uint8_t *p, size_t len, jpeg_census *c) {
    memset(c, 0, sizeof *c);
    size_t i = 2;
    while (i + 2 <= len) {
        if (p[i] != 0xFF) { i++; continue; }               /* extraneous bytes: libjpeg skips them too */
        uint8_t m = p[i + 1];
        if (m == 0xFF) { i++; continue; }
        if (m == 0xD9) return;                             /* EOI */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8)) { i += 2; continue; }
        if (i + 4 > len) return;
        size_t seg = be16(p + i + 2);
        if (seg < 2 || i + 2 + seg > len) return;
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (census_sof(c, m, p + i, seg)) return;
        } else if (m == 0xDA) {
            size_t next, n = entropy_len(p, len, i + 2 + seg, &next);
            if (census_sos(c, p + i, seg, n)) return;
            i = next;
            continue;
        }
        i += 2 + seg;
    }
}

static vit_status jpeg_cost(const uint8_t *p, size_t len, const vit_decode_limits *lim, uint64_t *cost,
                            int *scans, char *err, size_t errlen) {
    jpeg_census c;
    jpeg_walk(p, len, &c);
    int max_scans = lim && lim->max_scans > 0 ? lim->max_scans : VIT_DEFAULT_MAX_SCANS;
    *scans = max_scans;
    if (!c.have_sof) return VIT_OK;                        /* libjpeg reports what is wrong */
    vit_status st = vit_image_check_pixels(c.width, c.height, lim ? lim->max_pixels : 0, "JPEG", err, errlen);
    if (st) return st;
    if (c.scans > max_scans)
        return vit_errf(VIT_E_IMAGE_POLICY, err, errlen, "JPEG with %d scans, more than the limit of %d", c.scans,
                        max_scans);
    if (c.short_scan)
        return vit_errf(VIT_E_IMAGE_CORRUPT, err, errlen,
                        "truncated or corrupt JPEG: scan %d holds %llu bytes, fewer than the %llu its %ux%u "
                        "frame needs", c.short_scan, (unsigned long long)c.short_bytes,
                        (unsigned long long)c.short_need, c.width, c.height);
    *cost = c.scan_samples + (uint64_t)c.width * c.height * 3;
    if (c.scans > 0) *scans = c.scans;
    return VIT_OK;
}

/* ---- PNG -------------------------------------------------------------------------------- */

static vit_status png_cost(const uint8_t *p, size_t len, const vit_decode_limits *lim, uint64_t *cost,
                           char *err, size_t errlen) {
    if (len < 33 || memcmp(p + 12, "IHDR", 4)) return VIT_OK;   /* libpng reports it */
#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    /* a header that fails its CRC is libpng's to report (as corrupt), before any pixel work; fuzz
     * builds accept header CRCs as libpng there does (image.c) */
    if ((uint32_t)crc32(0, p + 12, 17) != be32(p + 29)) return VIT_OK;
#endif
    uint32_t w = be32(p + 16), h = be32(p + 20);
    int depth = p[24], ctype = p[25], interlace = p[28];
    vit_status st = vit_image_check_pixels(w, h, lim ? lim->max_pixels : 0, "PNG", err, errlen);
    if (st) return st;
    int ch = ctype == 0 ? 1 : ctype == 2 ? 3 : ctype == 3 ? 1 : ctype == 4 ? 2 : ctype == 6 ? 4 : 0;
    if (!ch || !(depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16)) return VIT_OK;
    uint64_t idat = 0;
    for (size_t off = 8; off + 8 <= len;) {
        uint32_t n = be32(p + off);
        if (!memcmp(p + off + 4, "IDAT", 4)) idat += n < len - off - 8 ? n : len - off - 8;
        if (!memcmp(p + off + 4, "IEND", 4) || (uint64_t)n + 12 > len - off) break;
        off += (size_t)n + 12;
    }
    uint64_t raw = (uint64_t)h * ceil_div((uint64_t)w * ch * depth, 8);   /* filter bytes not counted */
    if (raw > idat * DEFLATE_MAX_RATIO + 4096)
        return vit_errf(VIT_E_IMAGE_CORRUPT, err, errlen,
                        "truncated or corrupt PNG: %llu bytes of image data cannot hold the %llu bytes of a "
                        "%ux%u image", (unsigned long long)idat, (unsigned long long)raw, w, h);
    uint64_t px = (uint64_t)w * h;
    *cost = px * (uint64_t)ch * (depth == 16 ? 2 : 1) * (interlace ? 2 : 1) + px * 3;
    return VIT_OK;
}

vit_status vit_image_cost_scans(const void *data, size_t len, const vit_decode_limits *lim, uint64_t *cost,
                                int *scans, char *err, size_t errlen) {
    uint64_t c = 0;
    vit_status st;
    int ns = 0;
    if (cost) *cost = 0;
    if (scans) *scans = 0;
    if (!data || len == 0) return vit_errf(VIT_E_IMAGE_CORRUPT, err, errlen, "empty image");
    switch (vit_image_sniff(data, len)) {
    case VIT_FMT_JPEG: st = jpeg_cost(data, len, lim, &c, &ns, err, errlen); break;
    case VIT_FMT_PNG: st = png_cost(data, len, lim, &c, err, errlen); break;
    default: return vit_errf(VIT_E_IMAGE_FORMAT, err, errlen, "unsupported image format (JPEG and PNG are supported)");
    }
    if (st) return st;
    if (lim && lim->max_cost && c > lim->max_cost)
        return vit_errf(VIT_E_IMAGE_COST, err, errlen,
                        "image decode cost of %llu M samples (pixels x components x scans) is over the limit "
                        "of %llu M", (unsigned long long)((c + 999999) / 1000000),
                        (unsigned long long)(lim->max_cost / 1000000));
    if (cost) *cost = c;
    if (scans) *scans = ns;
    return VIT_OK;
}

vit_status vit_image_cost(const void *data, size_t len, const vit_decode_limits *lim, uint64_t *cost,
                          char *err, size_t errlen) {
    return vit_image_cost_scans(data, len, lim, cost, NULL, err, errlen);
}
