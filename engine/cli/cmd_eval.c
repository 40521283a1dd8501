/* cmd_eval.c: `vit eval`: accuracy of a model directory on a labelled image set, an ImageFolder
 * directory or an IDX pair (MNIST format), through the same decoding, preprocessing and engine
 * as the server.  Prints top-1/top-5 accuracy, per-class accuracy, the confusion matrix and
 * images/s (or one JSON object with --json); a progress bar on stderr when it is a terminal.
 *
 *   vit eval --model DIR --data PATH [--labels FILE] [--batch B] [--threads N] [--limit N]
 *            [--device auto|cpu|cuda] [--precision auto|fp32|fp16|int8|fp8] [--image-size N] [--by-order]
 *            [--confusion] [--json] [--predictions FILE]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "cli.h"
#include "dataset.h"
#include "util.h"
#include "vit.h"

#define EVAL_TOPK 5
#define EVAL_MAX_FAIL_SHOWN 5

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: vit eval --model DIR --data PATH [options]\n"
            "  PATH is an ImageFolder directory (one subfolder per class, matched to the model's\n"
            "  labels by name or by index) or an IDX images file (MNIST format, .gz ok) with its\n"
            "  labels file beside it.\n"
            "  --labels FILE        IDX labels file (default: found beside the images file)\n"
            "  --batch B            images per forward (default 16)\n"
            "  --threads N          CPU threads (default 0 = all cores)\n"
            "  --limit N            evaluate N evenly spaced images only\n"
            "  --device D           auto|cpu|cuda (default auto)\n"
            "  --precision P        auto|fp32|fp16|int8|fp8 (auto: fp32 on the CPU, fp16 on CUDA; int8/fp8 on CUDA need calibration.json)\n"
            "  --image-size N       run at another resolution than trained\n"
            "  --max-pixels N       refuse larger images (default %llu)\n"
            "  --by-order           sorted class folders are classes 0..C-1 (ImageNet synsets)\n"
            "  --confusion          print the confusion matrix even for more than 20 classes\n"
            "  --json               one JSON object on stdout instead of the text report\n"
            "  --predictions FILE   write one line per image: name<TAB>true<TAB>predicted index\n",
            (unsigned long long)VIT_DEFAULT_MAX_PIXELS);
}

typedef struct {
    int n, top1, top5, failed;
    int64_t *confusion;      /* (C, C): rows true, columns predicted */
    int *class_n, *class_top1;
} eval_counts;

static void print_text(const char *model_dir, const char *data, const cli_dataset *ds,
                       const vit_config *cfg, const eval_counts *k, int C, int topk,
                       int show_confusion, double secs, double fwd_secs, int batch,
                       const char *device) {
    printf("model:  %s (%s, %d classes)\n", model_dir, cfg->architecture, C);
    printf("data:   %s (%s, %d images, %d failed)\n", data, cli_dataset_kind(ds), k->n + k->failed,
           k->failed);
    double n = k->n > 0 ? k->n : 1;
    printf("top-1:  %.2f%% (%d/%d)\n", 100.0 * k->top1 / n, k->top1, k->n);
    printf("top-%d:  %.2f%% (%d/%d)\n", topk, 100.0 * k->top5 / n, k->top5, k->n);
    printf("\nper-class accuracy:\n  %5s  %-24s %7s %8s\n", "index", "label", "images", "top-1");
    for (int c = 0; c < C; c++) {
        if (!k->class_n[c]) continue;
        printf("  %5d  %-24.24s %7d %7.2f%%\n", c, cfg->labels[c], k->class_n[c],
               100.0 * k->class_top1[c] / k->class_n[c]);
    }
    if (show_confusion) {
        printf("\nconfusion matrix (rows: true class, columns: predicted class):\n  %5s", "");
        for (int c = 0; c < C; c++) printf(" %5d", c);
        printf("\n");
        for (int r = 0; r < C; r++) {
            if (!k->class_n[r]) continue;
            printf("  %5d", r);
            for (int c = 0; c < C; c++) printf(" %5lld", (long long)k->confusion[(size_t)r * C + c]);
            printf("\n");
        }
    }
    printf("\nthroughput: %.1f images/s end to end (decode + preprocess + forward), "
           "forward only %.1f images/s; batch %d, device %s, %.1f s\n",
           secs > 0 ? k->n / secs : 0, fwd_secs > 0 ? k->n / fwd_secs : 0, batch, device, secs);
}

static int print_json(const char *model_dir, const char *data, const cli_dataset *ds,
                      const vit_config *cfg, const eval_counts *k, int C, int topk,
                      int with_confusion, double secs, double fwd_secs, int batch,
                      const char *device) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return 1;
    cJSON_AddStringToObject(o, "model", model_dir);
    cJSON_AddStringToObject(o, "architecture", cfg->architecture);
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddStringToObject(o, "kind", cli_dataset_kind(ds));
    cJSON_AddNumberToObject(o, "images", k->n);
    cJSON_AddNumberToObject(o, "failed", k->failed);
    cJSON_AddNumberToObject(o, "top1_correct", k->top1);
    cJSON_AddNumberToObject(o, "top5_correct", k->top5);
    cJSON_AddNumberToObject(o, "top1", k->n ? (double)k->top1 / k->n : 0);
    cJSON_AddNumberToObject(o, "top5", k->n ? (double)k->top5 / k->n : 0);
    cJSON_AddNumberToObject(o, "top5_k", topk);
    cJSON *pc = cJSON_AddArrayToObject(o, "per_class");
    for (int c = 0; pc && c < C; c++) {
        if (!k->class_n[c]) continue;
        cJSON *e = cJSON_CreateObject();
        if (!e) break;
        cJSON_AddNumberToObject(e, "index", c);
        cJSON_AddStringToObject(e, "label", cfg->labels[c]);
        cJSON_AddNumberToObject(e, "images", k->class_n[c]);
        cJSON_AddNumberToObject(e, "top1_correct", k->class_top1[c]);
        cJSON_AddNumberToObject(e, "top1", (double)k->class_top1[c] / k->class_n[c]);
        cJSON_AddItemToArray(pc, e);
    }
    if (with_confusion) {
        cJSON *cm = cJSON_AddArrayToObject(o, "confusion");
        for (int r = 0; cm && r < C; r++) {
            cJSON *row = cJSON_CreateArray();
            if (!row) break;
            for (int c = 0; c < C; c++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)k->confusion[(size_t)r * C + c]));
            cJSON_AddItemToArray(cm, row);
        }
    }
    cJSON_AddNumberToObject(o, "seconds", secs);
    cJSON_AddNumberToObject(o, "images_per_s", secs > 0 ? k->n / secs : 0);
    cJSON_AddNumberToObject(o, "forward_images_per_s", fwd_secs > 0 ? k->n / fwd_secs : 0);
    cJSON_AddNumberToObject(o, "batch", batch);
    cJSON_AddStringToObject(o, "device", device);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) return 1;
    printf("%s\n", s);
    cJSON_free(s);
    return 0;
}

typedef struct {
    const char *model_dir, *data, *labels_path, *pred_path;
    int batch, threads, limit, image_size, by_order, json, force_confusion;
    long long max_pixels;
    vit_device device;
    vit_precision precision;
} eval_args;

/* 0 parsed, else the exit status to return now (0 after --help) */
static int eval_parse(int argc, char **argv, eval_args *a) {
    *a = (eval_args){.batch = 16, .max_pixels = (long long)VIT_DEFAULT_MAX_PIXELS,
                     .device = VIT_DEVICE_AUTO, .precision = VIT_PREC_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) { eval_usage(stdout); return -1; }
        else if (!strcmp(o, "--by-order")) { a->by_order = 1; continue; }
        else if (!strcmp(o, "--json")) { a->json = 1; continue; }
        else if (!strcmp(o, "--confusion")) { a->force_confusion = 1; continue; }
        if (!v || strncmp(o, "--", 2)) {
            fprintf(stderr, "vit eval: %s '%s'\n", strncmp(o, "--", 2) ? "unexpected argument"
                                                                       : "missing value for", o);
            cli_suggest_option("eval", o, eval_usage);
            eval_usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(o, "--model")) a->model_dir = v;
        else if (!strcmp(o, "--data")) a->data = v;
        else if (!strcmp(o, "--labels")) a->labels_path = v;
        else if (!strcmp(o, "--predictions")) a->pred_path = v;
        else if (!strcmp(o, "--batch")) { if ((a->batch = cli_parse_int(o, v, 1, 4096)) < 0) return 2; }
        else if (!strcmp(o, "--threads")) { if ((a->threads = cli_parse_int(o, v, 0, 1024)) < 0) return 2; }
        else if (!strcmp(o, "--limit")) { if ((a->limit = cli_parse_int(o, v, 0, 1 << 30)) < 0) return 2; }
        else if (!strcmp(o, "--image-size")) { if ((a->image_size = cli_parse_int(o, v, 0, 8192)) < 0) return 2; }
        else if (!strcmp(o, "--max-pixels")) {
            char *end;
            a->max_pixels = strtoll(v, &end, 10);
            if (*end || a->max_pixels <= 0) {
                fprintf(stderr, "vit eval: --max-pixels: expected a positive integer, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(o, "--device")) {
            if (cli_parse_device(v, &a->device) < 0) return 2;
        } else if (!strcmp(o, "--precision")) {
            if (cli_parse_precision(v, &a->precision) < 0) return 2;
        } else {
            fprintf(stderr, "vit eval: unknown option '%s'\n", o);
            cli_suggest_option("eval", o, eval_usage);
            eval_usage(stderr);
            return 2;
        }
    }
    if (!a->model_dir || !a->data) {
        fprintf(stderr, "vit eval: --model and --data are required\n");
        eval_usage(stderr);
        return 2;
    }
    return 0;
}

/* everything one evaluation holds; eval_close frees it */
typedef struct {
    vit_model *m;
    vit_session *s;
    cli_dataset *ds;
    const vit_config *cfg;
    int C, N, batch, topk;
    size_t per;                 /* floats per preprocessed image: 3 * H * W */
    float *input, *logits;      /* (B, 3, H, W), (B, C) */
    int *topi, *labels, *sample_of;
    FILE *pred;
    char devname[32];
    eval_counts k;
} eval_run;

/* model, data set, session and buffers; 0 ok, else 1 (reported) */
static int eval_open(const eval_args *a, eval_run *r) {
    char err[512] = "";
    vit_load_opts lo = {.image_size = a->image_size};
    if (cli_load_model("eval", a->model_dir, &lo, &r->m) != 0) return 1;
    r->cfg = vit_model_config(r->m);
    const int C = r->C = r->cfg->num_classes;
    if (cli_dataset_open(a->data, a->labels_path, r->cfg->labels, C, a->by_order, &r->ds, err, sizeof err)) {
        fprintf(stderr, "vit eval: %s\n", err);
        return 1;
    }
    cli_dataset_limit(r->ds, a->limit);
    r->N = cli_dataset_count(r->ds);
    if (cli_dataset_num_classes(r->ds) != C) {
        fprintf(stderr, "vit eval: internal: %d classes in the data, %d in the model\n",
                cli_dataset_num_classes(r->ds), C);
        return 1;
    }
    r->batch = a->batch > r->N ? r->N : a->batch;
    vit_session_opts so = {.max_batch = r->batch, .threads = a->threads, .device = a->device,
                           .precision = a->precision};
    if (cli_open_session("eval", r->m, &so, &r->s) != 0) return 1;
    snprintf(r->devname, sizeof r->devname, "%s %s",
             vit_session_device(r->s) == VIT_DEVICE_CUDA ? "cuda" : "cpu",
             vit_precision_str(vit_session_precision(r->s)));
    const vit_preprocess *pp = &r->cfg->preprocess;
    r->per = (size_t)3 * pp->out_h * pp->out_w;
    if (pp->out_h != r->cfg->image_size || pp->out_w != r->cfg->image_size) {
        fprintf(stderr, "vit eval: preprocessing makes %dx%d, the model runs at %d\n", pp->out_h,
                pp->out_w, r->cfg->image_size);
        return 1;
    }
    r->input = malloc(r->per * (size_t)r->batch * sizeof *r->input);
    r->logits = malloc((size_t)r->batch * C * sizeof *r->logits);
    r->topi = malloc(EVAL_TOPK * sizeof *r->topi);
    r->k.confusion = calloc((size_t)C * C, sizeof *r->k.confusion);
    r->k.class_n = calloc((size_t)C, sizeof *r->k.class_n);
    r->k.class_top1 = calloc((size_t)C, sizeof *r->k.class_top1);
    r->labels = malloc((size_t)r->batch * sizeof *r->labels);
    r->sample_of = malloc((size_t)r->batch * sizeof *r->sample_of);
    if (!r->input || !r->logits || !r->topi || !r->k.confusion || !r->k.class_n || !r->k.class_top1 ||
        !r->labels || !r->sample_of) {
        fprintf(stderr, "vit eval: out of memory (batch %d, %d classes)\n", r->batch, C);
        return 1;
    }
    if (a->pred_path && !(r->pred = fopen(a->pred_path, "w"))) {
        fprintf(stderr, "vit eval: %s: cannot open for writing\n", a->pred_path);
        return 1;
    }
    r->topk = C < EVAL_TOPK ? C : EVAL_TOPK;
    return 0;
}

/* fill one batch from the data set starting at *next (failed images are reported and counted);
 * returns the number of images in it */
static int eval_fill(eval_run *r, const eval_args *a, int *next, int *failed_shown, int tty) {
    int b = 0;
    while (b < r->batch && *next < r->N) {
        int i = (*next)++;
        char ierr[256] = "";
        vit_status ist = cli_dataset_tensor(r->ds, i, &r->cfg->preprocess, (uint64_t)a->max_pixels,
                                            r->input + (size_t)b * r->per, ierr, sizeof ierr);
        if (ist) {
            char nb[600];
            if ((*failed_shown)++ < EVAL_MAX_FAIL_SHOWN)
                fprintf(stderr, "%svit eval: %s: %s: %s\n", tty ? "\r" : "",
                        cli_dataset_sample_name(r->ds, i, nb, sizeof nb), vit_status_str(ist), ierr);
            r->k.failed++;
            continue;
        }
        r->sample_of[b] = i;
        r->labels[b++] = cli_dataset_label(r->ds, i);
    }
    return b;
}

/* count one forward's b results (and write their prediction lines) */
static void eval_score(eval_run *r, int b) {
    const int C = r->C;
    eval_counts *k = &r->k;
    for (int j = 0; j < b; j++) {
        int n = vit_topk(r->logits + (size_t)j * C, C, r->topk, r->topi);
        int y = r->labels[j];
        k->n++;
        k->class_n[y]++;
        k->confusion[(size_t)y * C + r->topi[0]]++;
        if (r->topi[0] == y) { k->top1++; k->class_top1[y]++; }
        for (int t = 0; t < n; t++)
            if (r->topi[t] == y) { k->top5++; break; }
        if (r->pred) {
            char nb[600];
            fprintf(r->pred, "%s\t%d\t%d\n", cli_dataset_sample_name(r->ds, r->sample_of[j], nb, sizeof nb),
                    y, r->topi[0]);
        }
    }
}

/* every image through the engine; 0 ok, 1 a forward failed (reported) */
static int eval_loop(eval_run *r, const eval_args *a, double *secs, double *fwd) {
    cli_progress bar;
    cli_progress_start(&bar, -1, "images");
    double t0 = vit_now();
    int next = 0, failed_shown = 0;
    *fwd = 0;
    while (next < r->N) {
        int b = eval_fill(r, a, &next, &failed_shown, bar.tty);
        if (b == 0) continue;
        vit_outputs o = {.logits = r->logits};
        double tf = vit_now();
        vit_status st = vit_forward(r->s, r->input, b, NULL, &o);
        *fwd += vit_now() - tf;
        if (st) {
            fprintf(stderr, "%svit eval: forward: %s: %s\n", bar.tty ? "\n" : "", vit_status_str(st),
                    vit_session_errmsg(r->s));
            return 1;
        }
        eval_score(r, b);
        cli_progress_update(&bar, r->k.n + r->k.failed, r->N, NULL);
    }
    *secs = vit_now() - t0;
    cli_progress_end(&bar);
    return 0;
}

static void eval_close(eval_run *r) {
    free(r->sample_of);
    free(r->labels);
    free(r->input);
    free(r->logits);
    free(r->topi);
    free(r->k.confusion);
    free(r->k.class_n);
    free(r->k.class_top1);
    cli_dataset_free(r->ds);
    vit_session_free(r->s);
    vit_model_free(r->m);
}

int cmd_eval(int argc, char **argv) {
    eval_args a;
    int rc = eval_parse(argc, argv, &a);
    if (rc) return rc < 0 ? 0 : rc;
    eval_run r = {0};
    double secs = 0, fwd = 0;
    rc = 1;
    if (eval_open(&a, &r) != 0 || eval_loop(&r, &a, &secs, &fwd) != 0) goto out;
    const eval_counts *k = &r.k;
    if (k->failed > EVAL_MAX_FAIL_SHOWN)
        fprintf(stderr, "vit eval: %d images failed in all (first %d shown)\n", k->failed,
                EVAL_MAX_FAIL_SHOWN);
    if (k->n == 0) {
        fprintf(stderr, "vit eval: no image could be evaluated\n");
        goto out;
    }
    if (a.json) {
        if (print_json(a.model_dir, a.data, r.ds, r.cfg, k, r.C, r.topk, a.force_confusion || r.C <= 100,
                       secs, fwd, r.batch, r.devname)) {
            fprintf(stderr, "vit eval: out of memory writing JSON\n");
            goto out;
        }
    } else {
        print_text(a.model_dir, a.data, r.ds, r.cfg, k, r.C, r.topk, a.force_confusion || r.C <= 20, secs,
                   fwd, r.batch, r.devname);
    }
    rc = k->failed ? 1 : 0;
out:
    if (r.pred && fclose(r.pred) != 0) {
        fprintf(stderr, "vit eval: %s: write failed\n", a.pred_path);
        rc = 1;
    }
    eval_close(&r);
    return rc;
}
