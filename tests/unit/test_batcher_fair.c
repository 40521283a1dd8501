/* test_batcher_fair.c: fairness, budgets and cancellation in the decode pipeline
 * (server/batcher.c) on the tiny-hf fixture, one decoder, without HTTP:
 *  - round robin across requests: a 1-image request submitted behind an 8-image one is answered
 *    before it (first in, first out would answer it last);
 *  - the request's decode budget (max_request_cost): the image that would pass it gets 413
 *    decode_cost_exceeded, the others their results;
 *  - while the only decoder is busy with a 49 Mpixel image, a request whose deadline passes and
 *    one whose client closed its socket are answered 504 / 499 by the sweep (the decoder is still
 *    busy when they are answered) and never decoded;
 *  - batcher_cancel drops a job's queued images (499) and the metrics count both reasons.
 * Ordering checks only: no timing thresholds. */
#include "harness.h"
#include "../../server/batcher.c"
#include "../../server/metrics.c"

#include <jpeglib.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

static atomic_int seq;
typedef struct { atomic_int order; atomic_int in_decode_at_done; batcher *b; } done_rec;
static void on_done(srv_job *j, void *arg) {
    (void)j;
    done_rec *r = arg;
    if (r->b) {
        pthread_mutex_lock(&r->b->mu);
        atomic_store(&r->in_decode_at_done, r->b->in_decode);
        pthread_mutex_unlock(&r->b->mu);
    }
    atomic_store(&r->order, atomic_fetch_add(&seq, 1) + 1);
}
static void wait_for(done_rec *r) { for (int i = 0; i < 60000 && !atomic_load(&r->order); i++) usleep(1000); }

static srv_job *job(batcher *b, int n, const uint8_t *d, size_t len, done_rec *r) {
    srv_job *j = srv_job_new(b, n, 0, 1);
    for (int i = 0; i < n; i++) { j->items[i].data = d; j->items[i].len = len; }
    j->done = on_done;
    j->done_arg = r;
    return j;
}

static int count_http(const srv_job *j, int http) {
    int k = 0;
    for (int i = 0; i < j->n; i++) k += j->items[i].http == http;
    return k;
}

/* a w x h gray baseline JPEG of a gradient (slow to decode, small to hold) */
static uint8_t *big_jpeg(int w, int h, size_t *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    unsigned char *buf = NULL;
    unsigned long n = 0;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_mem_dest(&c, &buf, &n);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 50, TRUE);
    jpeg_start_compress(&c, TRUE);
    uint8_t *row = malloc((size_t)w);
    for (int x = 0; x < w; x++) row[x] = (uint8_t)(x * 7);
    while (c.next_scanline < c.image_height) { JSAMPROW r = row; jpeg_write_scanlines(&c, &r, 1); }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    *len = n;
    return buf;
}

int main(void) {
    const char *dir = "tests/fixtures/models/tiny-hf";
    char err[256];
    vit_model *m;
    metrics_init();
    if (vit_model_load(dir, NULL, &m, err, sizeof err) != VIT_OK) { CHECK(0, "load %s: %s", dir, err); return TEST_SUMMARY(); }
    uint8_t *png;
    size_t png_len, big_len;
    if (vit_read_file("tests/data/sneaker.png", 1 << 20, &png, &png_len, err, sizeof err)) {
        CHECK(0, "test image: %s", err);
        return TEST_SUMMARY();
    }
    uint64_t png_cost = 0;
    vit_image_cost(png, png_len, NULL, &png_cost, err, sizeof err);
    uint8_t *big = big_jpeg(7000, 7000, &big_len);
    batcher *b;
    batcher_opts bo = {.max_batch = 4, .max_queue = 32, .workers = 1, .threads = 1, .decoders = 1,
                       .max_delay_us = 20000, .max_pixels = VIT_DEFAULT_MAX_PIXELS, .device = VIT_DEVICE_CPU,
                       .max_request_cost = png_cost * 5 / 2};
    vit_status st = batcher_new(m, &bo, &b, err, sizeof err);
    CHECK(st == VIT_OK, "batcher_new (%s)", st ? err : "ok");
    if (st) return TEST_SUMMARY();

    /* fairness: A (8 images, over its budget after 2) then B (1 image), both queued while the only
     * decoder is busy with a 49 Mpixel image (else it could take all of A before B arrives) */
    done_rec ra = {0}, rb = {0}, rblock = {0};
    b->o.max_request_cost = 0;
    srv_job *jblock = job(b, 1, big, big_len, &rblock);
    batcher_submit(b, jblock, NULL);
    for (int i = 0; i < 5000 && !atomic_load(&jblock->cost); i++) usleep(1000);   /* charged: decoding */
    b->o.max_request_cost = png_cost * 5 / 2;
    srv_job *ja = job(b, 8, png, png_len, &ra), *jb = job(b, 1, png, png_len, &rb);
    int r1 = batcher_submit(b, ja, NULL), r2 = batcher_submit(b, jb, NULL);
    wait_for(&ra); wait_for(&rb); wait_for(&rblock);
    srv_job_free(jblock);
    CHECK(r1 == 0 && r2 == 0 && atomic_load(&rb.order) && atomic_load(&rb.order) < atomic_load(&ra.order),
          "round robin: the 1-image request answered before the 8-image one submitted first (B=%d, A=%d)",
          atomic_load(&rb.order), atomic_load(&ra.order));
    int over = count_http(ja, 413);
    CHECK(count_http(ja, 200) == 2 && over == 6 && !strcmp(ja->items[7].code, "decode_cost_exceeded"),
          "request budget of 2.5 images: 2 answered, %d refused 413 (%s)", over, ja->items[7].err);
    CHECK(jb->items[0].http == 200, "B within its own budget: 200");
    srv_job_free(ja); srv_job_free(jb);

    /* the decoder busy on a 49 Mpixel JPEG; C's deadline passes and D's client leaves meanwhile */
    b->o.max_request_cost = 0;
    done_rec rbig = {.b = b}, rc = {.b = b}, rd = {.b = b};
    int sv[2] = {-1, -1};
    int sp = socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    srv_job *jbig = job(b, 1, big, big_len, &rbig), *jc = job(b, 3, png, png_len, &rc),
            *jd = job(b, 3, png, png_len, &rd);
    jd->client_fd = sv[0];
    batcher_submit(b, jbig, NULL);
    for (int i = 0; i < 2000 && !b->in_decode; i++) usleep(1000);   /* the decoder took it */
    jc->deadline = vit_now() + 0.01;
    batcher_submit(b, jc, NULL);
    batcher_submit(b, jd, NULL);
    if (sp == 0) close(sv[1]);
    wait_for(&rc); wait_for(&rd); wait_for(&rbig);
    CHECK(count_http(jc, 504) == 3 && jc->items[0].decode_s == 0 && atomic_load(&rc.in_decode_at_done) == 1,
          "deadline passed while waiting: 504 x%d, answered while the decoder was still busy (%d), never decoded",
          count_http(jc, 504), atomic_load(&rc.in_decode_at_done));
    CHECK(sp == 0 && count_http(jd, 499) == 3 && jd->items[0].decode_s == 0 && atomic_load(&rd.in_decode_at_done) == 1,
          "client closed its socket: 499 x%d (%s), answered while the decoder was busy (%d)", count_http(jd, 499),
          jd->items[0].code ? jd->items[0].code : "-", atomic_load(&rd.in_decode_at_done));
    CHECK(jbig->items[0].http == 200, "the 49 Mpixel image itself: %d %s", jbig->items[0].http, jbig->items[0].err);
    srv_job_free(jbig); srv_job_free(jc); srv_job_free(jd);
    if (sp == 0) close(sv[0]);

    /* batcher_cancel: queued images dropped without decoding */
    done_rec rbig2 = {0}, re = {0};
    srv_job *jbig2 = job(b, 1, big, big_len, &rbig2), *je = job(b, 4, png, png_len, &re);
    batcher_submit(b, jbig2, NULL);
    batcher_submit(b, je, NULL);
    batcher_cancel(b, je);
    wait_for(&re); wait_for(&rbig2);
    CHECK(count_http(je, 499) == 4, "batcher_cancel: 4 queued images 499 (%d)", count_http(je, 499));
    srv_job_free(jbig2); srv_job_free(je);

    char *txt = metrics_render(NULL);
    CHECK(txt && strstr(txt, "vitd_cancelled_total{reason=\"deadline\"} 3\n") &&
          strstr(txt, "vitd_cancelled_total{reason=\"client_gone\"} 7\n") &&
          strstr(txt, "vitd_rejected_total{reason=\"decode_cost\"} 6\n"),
          "metrics: cancelled by reason (deadline 3, client_gone 7), rejected decode_cost 6");
    free(txt);
    batcher_free(b);
    vit_model_free(m);
    free(png);
    free(big);
    return TEST_SUMMARY();
}
