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

int cmd_classify(int argc, char **argv) {
    cli_engine_opts eo = {0};
    int topk = 5, batch = 8, want_attn = 0, want_roll = 0;
    unsigned long long max_pixels = VIT_DEFAULT_MAX_PIXELS;
    const char **files = calloc((size_t)argc, sizeof *files);
    int nfiles = 0;
    if (!files) { fprintf(stderr, "vit classify: out of memory\n"); return 1; }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0, eng = cli_engine_opt(a, v, &eo);
        if (eng < 0) { free(files); return 2; }
        if (eng > 0) { i++; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); free(files); return 0; }
        else if (!strcmp(a, "--top-k") && v) { bad = (topk = cli_parse_int("--top-k", v, 1, 100000)) < 0; i++; }
        else if (!strcmp(a, "--batch") && v) { bad = (batch = cli_parse_int("--batch", v, 1, 4096)) < 0; i++; }
        else if (!strcmp(a, "--attention")) want_attn = 1;
        else if (!strcmp(a, "--rollout")) want_roll = 1;
        else if (!strcmp(a, "--max-pixels") && v) {
            char *end;
            max_pixels = strtoull(v, &end, 10);
            bad = !*v || *end || max_pixels == 0;
            if (bad) fprintf(stderr, "vit classify: --max-pixels: bad value '%s'\n", v);
            i++;
        } else if (!strcmp(a, "--")) { while (++i < argc) files[nfiles++] = argv[i]; }
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "vit classify: unknown or incomplete option '%s'\n", a);
            cli_suggest_option("classify", a, usage);
            bad = 1;
        }
        else files[nfiles++] = a;
        if (bad) { free(files); return 2; }
    }
    const char *model = eo.model ? eo.model : cli_default_model();
    if (nfiles == 0) {
        fprintf(stderr, "vit classify: at least one IMAGE is required\n");
        usage(stderr);
        free(files);
        return 2;
    }
    if (batch > nfiles) batch = nfiles;

    vit_model *m = NULL;
    vit_session *s = NULL;
    float *x = NULL, *logits = NULL, *maps = NULL;
    int *slot = NULL, *idx = NULL, rc = 1, first_fail = 0, nfailed = 0;
    char (*msgs)[512] = NULL;
    vit_status st;
    vit_load_opts lo = {.image_size = eo.image_size};
    if ((rc = cli_load_model("classify", model, &lo, &m)) != 0) {
        free(files);
        return rc;
    }
    rc = 1;
    const vit_config *c = vit_model_config(m);
    vit_session_opts so = {.max_batch = batch, .threads = eo.threads, .device = eo.device,
                           .precision = eo.precision};
    if ((rc = cli_open_session("classify", m, &so, &s)) != 0) goto out;
    rc = 1;
    if (c->preprocess.out_h != c->grid_h * c->patch_size ||
        c->preprocess.out_w != c->grid_w * c->patch_size) {
        fprintf(stderr, "vit classify: preprocessing makes %dx%d, the model takes %dx%d\n",
                c->preprocess.out_h, c->preprocess.out_w, c->grid_h * c->patch_size,
                c->grid_w * c->patch_size);
        rc = 7;
        goto out;
    }
    const vit_head *head = vit_model_head(m);
    int K = vit_head_num_classes(head), NP = c->num_patches;
    if (topk > K) topk = K;
    size_t img = (size_t)c->num_channels * c->preprocess.out_h * c->preprocess.out_w;
    x = malloc(sizeof(float) * img * batch);
    logits = malloc(sizeof(float) * (size_t)K * batch);
    maps = malloc(sizeof(float) * (size_t)NP * batch);
    slot = malloc(sizeof(int) * batch);
    idx = malloc(sizeof(int) * (size_t)topk);
    msgs = malloc(sizeof *msgs * batch);
    if (!x || !logits || !maps || !slot || !idx || !msgs) {
        fprintf(stderr, "vit classify: out of memory\n");
        goto out;
    }
    for (int i0 = 0; i0 < nfiles; i0 += batch) {
        int n = nfiles - i0 < batch ? nfiles - i0 : batch, ok = 0;
        /* decode each file of this chunk into the next free batch slot */
        for (int j = 0; j < n; j++) {
            uint8_t *buf = NULL;
            size_t len = 0;
            slot[j] = -1;
            st = vit_read_file(files[i0 + j], MAX_FILE_BYTES, &buf, &len, msgs[j], sizeof msgs[j]);
            if (st == VIT_OK)
                st = vit_image_load(buf, len, &c->preprocess, max_pixels, x + (size_t)ok * img,
                                    msgs[j], sizeof msgs[j]);
            free(buf);
            if (st == VIT_OK) slot[j] = ok++;
            else {
                nfailed++;
                if (!first_fail) first_fail = cli_exit_status(st) ? cli_exit_status(st) : 1;
            }
        }
        if (ok > 0) {
            vit_outputs o = {.logits = logits,
                             .attn_cls = want_attn && !want_roll ? maps : NULL,
                             .attn_rollout = want_roll ? maps : NULL};
            st = vit_forward(s, x, ok, NULL, &o);
            if (st) {
                fprintf(stderr, "vit classify: forward: %s\n", vit_session_errmsg(s));
                rc = cli_exit_status(st);
                goto out;
            }
        }
        for (int j = 0; j < n; j++) {
            const char *file = files[i0 + j];
            if (slot[j] < 0) {
                print_error(file, msgs[j]);
                continue;
            }
            float *lg = logits + (size_t)slot[j] * K;
            vit_softmax(lg, K);
            int k = vit_topk(lg, K, topk, idx);
            cJSON *obj = cJSON_CreateObject();
            cJSON_AddStringToObject(obj, "file", file);
            cJSON *preds = cJSON_AddArrayToObject(obj, "predictions");
            for (int t = 0; t < k; t++) {
                cJSON *p = cJSON_CreateObject();
                const char *label = vit_head_label(head, idx[t]);
                char lb[32];
                if (!label) { snprintf(lb, sizeof lb, "%d", idx[t]); label = lb; }
                cJSON_AddStringToObject(p, "label", label);
                cJSON_AddNumberToObject(p, "index", idx[t]);
                cJSON_AddItemToObject(p, "score", num6(lg[idx[t]]));
                cJSON_AddItemToArray(preds, p);
            }
            if (want_attn || want_roll) {
                cJSON *a = cJSON_AddObjectToObject(obj, "attention");
                cJSON_AddStringToObject(a, "kind", want_roll ? "rollout" : "cls");
                cJSON *g = cJSON_AddArrayToObject(a, "grid");
                cJSON_AddItemToArray(g, cJSON_CreateNumber(c->grid_h));
                cJSON_AddItemToArray(g, cJSON_CreateNumber(c->grid_w));
                cJSON *vals = cJSON_AddArrayToObject(a, "values");
                const float *mp = maps + (size_t)slot[j] * NP;
                for (int p = 0; p < NP; p++) cJSON_AddItemToArray(vals, num6(mp[p]));
            }
            print_line(obj);
        }
        fflush(stdout);
    }
    if (nfailed)
        fprintf(stderr, "vit classify: %d of %d images failed (see their \"error\" lines)\n",
                nfailed, nfiles);
    rc = first_fail;
out:
    free(files);
    free(x);
    free(logits);
    free(maps);
    free(slot);
    free(idx);
    free(msgs);
    vit_session_free(s);
    vit_model_free(m);
    return rc;
}
