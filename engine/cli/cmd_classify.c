/* cmd_classify.c: `vit classify`: classify JPEG/PNG files, one JSON object per line per image.
 *   vit classify [--model DIR] [--top-k K] [--attention] [--rollout] [--batch B] [--threads N]
 *                [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8] [--image-size N]
 *                [--max-pixels N] IMAGE...
 * Without --model: the shipped model (models/fashion-vit), found as vitd finds it.
 * Each line, in the order given:
 *   {"file": F, "predictions": [{"label": L, "index": i, "score": p}, ...],
 *    "attention": {"grid": [h, w], "values": [...]}}          (attention only when asked)
 * A file that cannot be read or decoded gets {"file": F, "error": MESSAGE} and the others still
 * run; the exit status is then that of the first failure (3 i/o, 4 unsupported format,
 * 5 too large, 6 corrupt), after every image.  Images run in batches of B (default 8). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util.h"

#define MAX_FILE_BYTES ((size_t)256 << 20)

static void usage(FILE *f) {
    fprintf(f, "usage: vit classify [--model DIR] [--top-k K] [--attention] [--rollout] [--batch B]\n"
               "                    [--threads N] [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8]\n"
               "                    [--image-size N] [--max-pixels N] IMAGE...\n"
               "  one JSON object per image per line; --model defaults to the shipped model\n"
               "  (models/fashion-vit, as vitd); --attention adds the last layer's CLS\n"
               "  attention (head-averaged), --rollout the attention rollout instead; --image-size\n"
               "  runs the model at another size (position embeddings resampled, preprocessing too)\n");
}

/* a number as short JSON text (6 significant digits) */
static cJSON *num6(double v) {
    char b[32];
    snprintf(b, sizeof b, "%.6g", v);
    return cJSON_CreateRaw(b);
}

static void print_line(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    cJSON_Delete(o);
}

static void print_error(const char *file, const char *msg) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "file", file);
    cJSON_AddStringToObject(o, "error", msg);
    print_line(o);
}

/* the command line */
typedef struct cls_args {
    cli_engine_opts eo;
    int topk, batch, want_attn, want_roll, nfiles;
    unsigned long long max_pixels;
    const char **files;        /* (nfiles), pointing into argv; the array is the caller's to free */
} cls_args;

/* the model, the session and the buffers of one batch */
typedef struct cls_run {
    vit_model *m;
    vit_session *s;
    const vit_config *c;
    const vit_head *head;
    int K, NP, topk;
    size_t img;                /* floats per preprocessed image (C, H, W) */
    float *x;                  /* (batch, C, H, W) */
    float *logits;             /* (batch, K) */
    float *maps;               /* (batch, NP) */
    int *slot, *idx;           /* (batch) batch slot of each file or -1; (topk) */
    char (*msgs)[512];         /* (batch) each file's error */
} cls_run;

/* 0 to go on, -1 after --help, else the exit status */
static int parse_args(int argc, char **argv, cls_args *a) {
    *a = (cls_args){.topk = 5, .batch = 8, .max_pixels = VIT_DEFAULT_MAX_PIXELS};
    if (!(a->files = calloc((size_t)argc, sizeof *a->files))) { fprintf(stderr, "vit classify: out of memory\n"); return 1; }
    for (int i = 1; i < argc; i++) {
        int rc = cli_engine_arg(argc, argv, &i, &a->eo, usage), bad = 0;
        if (rc == CLI_ARG_NEXT) continue;
        if (rc != CLI_ARG_OWN) return rc ? rc : -1;
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--top-k") && v) { bad = (a->topk = cli_parse_int("--top-k", v, 1, 100000)) < 0; i++; }
        else if (!strcmp(o, "--batch") && v) { bad = (a->batch = cli_parse_int("--batch", v, 1, 4096)) < 0; i++; }
        else if (!strcmp(o, "--attention")) a->want_attn = 1;
        else if (!strcmp(o, "--rollout")) a->want_roll = 1;
        else if (!strcmp(o, "--max-pixels") && v) {
            char *end;
            a->max_pixels = strtoull(v, &end, 10);
            bad = !*v || *end || a->max_pixels == 0;
            if (bad) fprintf(stderr, "vit classify: --max-pixels: bad value '%s'\n", v);
            i++;
        } else if (!strcmp(o, "--")) { while (++i < argc) a->files[a->nfiles++] = argv[i]; }
        else if (o[0] == '-' && o[1]) bad = cli_unknown_option("classify", o, usage, NULL);
        else a->files[a->nfiles++] = o;
        if (bad) return 2;
    }
    if (a->nfiles == 0) {
        fprintf(stderr, "vit classify: at least one IMAGE is required\n");
        usage(stderr);
        return 2;
    }
    if (a->batch > a->nfiles) a->batch = a->nfiles;
    return 0;
}

/* model, session and buffers; 0 or the exit status (reported) */
static int cls_open(const cls_args *a, cls_run *r) {
    vit_load_opts lo = {.image_size = a->eo.image_size};
    int rc = cli_load_model("classify", a->eo.model ? a->eo.model : cli_default_model(), &lo, &r->m);
    if (rc) return rc;
    const vit_config *c = r->c = vit_model_config(r->m);
    vit_session_opts so = {.max_batch = a->batch, .threads = a->eo.threads, .device = a->eo.device,
                           .precision = a->eo.precision};
    if ((rc = cli_open_session("classify", r->m, &so, &r->s)) != 0) return rc;
    if (c->preprocess.out_h != c->grid_h * c->patch_size ||
        c->preprocess.out_w != c->grid_w * c->patch_size) {
        fprintf(stderr, "vit classify: preprocessing makes %dx%d, the model takes %dx%d\n",
                c->preprocess.out_h, c->preprocess.out_w, c->grid_h * c->patch_size,
                c->grid_w * c->patch_size);
        return 7;
    }
    r->head = vit_model_head(r->m);
    r->K = vit_head_num_classes(r->head);
    r->NP = c->num_patches;
    r->topk = a->topk > r->K ? r->K : a->topk;
    r->img = (size_t)c->num_channels * c->preprocess.out_h * c->preprocess.out_w;
    const int B = a->batch;
    r->x = malloc(sizeof(float) * r->img * B);
    r->logits = malloc(sizeof(float) * (size_t)r->K * B);
    r->maps = malloc(sizeof(float) * (size_t)r->NP * B);
    r->slot = malloc(sizeof(int) * B);
    r->idx = malloc(sizeof(int) * (size_t)r->topk);
    r->msgs = malloc(sizeof *r->msgs * B);
    if (!r->x || !r->logits || !r->maps || !r->slot || !r->idx || !r->msgs) {
        fprintf(stderr, "vit classify: out of memory\n");
        return 1;
    }
    return 0;
}

static void cls_close(cls_run *r) {
    free(r->x);
    free(r->logits);
    free(r->maps);
    free(r->slot);
    free(r->idx);
    free(r->msgs);
    vit_session_free(r->s);
    vit_model_free(r->m);
}

/* decode files (n) into the next free batch slots: r->slot[j] or -1 with r->msgs[j]; returns the
 * images decoded; *first_fail takes the exit status of the first failure, *nfailed counts them */
static int decode_chunk(const cls_args *a, cls_run *r, const char **files, int n, int *first_fail, int *nfailed) {
    int ok = 0;
    for (int j = 0; j < n; j++) {
        uint8_t *buf = NULL;
        size_t len = 0;
        r->slot[j] = -1;
        vit_status st = vit_read_file(files[j], MAX_FILE_BYTES, &buf, &len, r->msgs[j], sizeof r->msgs[j]);
        if (st == VIT_OK)
            st = vit_image_load(buf, len, &r->c->preprocess, a->max_pixels, r->x + (size_t)ok * r->img,
                                r->msgs[j], sizeof r->msgs[j]);
        free(buf);
        if (st == VIT_OK) r->slot[j] = ok++;
        else {
            (*nfailed)++;
            if (!*first_fail) *first_fail = cli_exit_status(st) ? cli_exit_status(st) : 1;
        }
    }
    return ok;
}

/* one image's JSON line from batch slot `slot` */
static void print_result(const cls_args *a, cls_run *r, const char *file, int slot) {
    float *lg = r->logits + (size_t)slot * r->K;
    vit_softmax(lg, r->K);
    int k = vit_topk(lg, r->K, r->topk, r->idx);
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "file", file);
    cJSON *preds = cJSON_AddArrayToObject(obj, "predictions");
    for (int t = 0; t < k; t++) {
        cJSON *p = cJSON_CreateObject();
        const char *label = vit_head_label(r->head, r->idx[t]);
        char lb[32];
        if (!label) { snprintf(lb, sizeof lb, "%d", r->idx[t]); label = lb; }
        cJSON_AddStringToObject(p, "label", label);
        cJSON_AddNumberToObject(p, "index", r->idx[t]);
        cJSON_AddItemToObject(p, "score", num6(lg[r->idx[t]]));
        cJSON_AddItemToArray(preds, p);
    }
    if (a->want_attn || a->want_roll) {
        cJSON *at = cJSON_AddObjectToObject(obj, "attention");
        cJSON_AddStringToObject(at, "kind", a->want_roll ? "rollout" : "cls");
        cJSON *g = cJSON_AddArrayToObject(at, "grid");
        cJSON_AddItemToArray(g, cJSON_CreateNumber(r->c->grid_h));
        cJSON_AddItemToArray(g, cJSON_CreateNumber(r->c->grid_w));
        cJSON *vals = cJSON_AddArrayToObject(at, "values");
        const float *mp = r->maps + (size_t)slot * r->NP;
        for (int p = 0; p < r->NP; p++) cJSON_AddItemToArray(vals, num6(mp[p]));
    }
    print_line(obj);
}

int cmd_classify(int argc, char **argv) {
    cls_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc) { free(a.files); return rc < 0 ? 0 : rc; }
    cls_run r = {0};
    int first_fail = 0, nfailed = 0;
    if ((rc = cls_open(&a, &r)) != 0) goto out;
    for (int i0 = 0; i0 < a.nfiles; i0 += a.batch) {
        int n = a.nfiles - i0 < a.batch ? a.nfiles - i0 : a.batch;
        int ok = decode_chunk(&a, &r, a.files + i0, n, &first_fail, &nfailed);
        if (ok > 0) {
            vit_outputs o = {.logits = r.logits,
                             .attn_cls = a.want_attn && !a.want_roll ? r.maps : NULL,
                             .attn_rollout = a.want_roll ? r.maps : NULL};
            vit_status st = vit_forward(r.s, r.x, ok, NULL, &o);
            if (st) {
                fprintf(stderr, "vit classify: forward: %s\n", vit_session_errmsg(r.s));
                rc = cli_exit_status(st);
                goto out;
            }
        }
        for (int j = 0; j < n; j++) {
            if (r.slot[j] < 0) print_error(a.files[i0 + j], r.msgs[j]);
            else print_result(&a, &r, a.files[i0 + j], r.slot[j]);
        }
        fflush(stdout);
    }
    if (nfailed)
        fprintf(stderr, "vit classify: %d of %d images failed (see their \"error\" lines)\n",
                nfailed, a.nfiles);
    rc = first_fail;
out:
    free(a.files);
    cls_close(&r);
    return rc;
}
