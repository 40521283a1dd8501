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
#include <unistd.h>

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

static void progress(int done, int total, double elapsed) {
    const int width = 30;
    int fill = total ? (int)((int64_t)done * width / total) : width;
    double rate = elapsed > 0 ? done / elapsed : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    fprintf(stderr, "\r[%s] %d/%d  %.1f images/s  ETA %dm%02ds ", bar, done, total, rate,
            (int)eta / 60, (int)eta % 60);
    fflush(stderr);
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

int cmd_eval(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *labels_path = NULL, *pred_path = NULL;
    int batch = 16, threads = 0, limit = 0, image_size = 0, by_order = 0, json = 0;
    int force_confusion = 0;
    long long max_pixels = (long long)VIT_DEFAULT_MAX_PIXELS;
    vit_device device = VIT_DEVICE_AUTO;
    vit_precision precision = VIT_PREC_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { eval_usage(stdout); return 0; }
        else if (!strcmp(a, "--by-order")) { by_order = 1; continue; }
        else if (!strcmp(a, "--json")) { json = 1; continue; }
        else if (!strcmp(a, "--confusion")) { force_confusion = 1; continue; }
        if (!v || strncmp(a, "--", 2)) {
            fprintf(stderr, "vit eval: %s '%s'\n", strncmp(a, "--", 2) ? "unexpected argument"
                                                                       : "missing value for", a);
            eval_usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--labels")) labels_path = v;
        else if (!strcmp(a, "--predictions")) pred_path = v;
        else if (!strcmp(a, "--batch")) { if ((batch = cli_parse_int(a, v, 1, 4096)) < 0) return 2; }
        else if (!strcmp(a, "--threads")) { if ((threads = cli_parse_int(a, v, 0, 1024)) < 0) return 2; }
        else if (!strcmp(a, "--limit")) { if ((limit = cli_parse_int(a, v, 0, 1 << 30)) < 0) return 2; }
        else if (!strcmp(a, "--image-size")) { if ((image_size = cli_parse_int(a, v, 0, 8192)) < 0) return 2; }
        else if (!strcmp(a, "--max-pixels")) {
            char *end;
            max_pixels = strtoll(v, &end, 10);
            if (*end || max_pixels <= 0) {
                fprintf(stderr, "vit eval: --max-pixels: expected a positive integer, got '%s'\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--device")) {
            if (cli_parse_device(v, &device) < 0) return 2;
        } else if (!strcmp(a, "--precision")) {
            if (cli_parse_precision(v, &precision) < 0) return 2;
        } else {
            fprintf(stderr, "vit eval: unknown option '%s'\n", a);
            eval_usage(stderr);
            return 2;
        }
    }
    if (!model_dir || !data) {
        fprintf(stderr, "vit eval: --model and --data are required\n");
        eval_usage(stderr);
        return 2;
    }

    char err[512] = "";
    int rc = 1;
    vit_model *m = NULL;
    vit_session *s = NULL;
    cli_dataset *ds = NULL;
    float *input = NULL, *logits = NULL;
    int *topi = NULL, *sample_of = NULL;
    FILE *pred = NULL;
    eval_counts k = {0};

    vit_load_opts lo = {.image_size = image_size};
    vit_status st;
    if (cli_load_model("eval", model_dir, &lo, &m) != 0) goto out;
    const vit_config *cfg = vit_model_config(m);
    const int C = cfg->num_classes;
    st = cli_dataset_open(data, labels_path, cfg->labels, C, by_order, &ds, err, sizeof err);
    if (st) {
        fprintf(stderr, "vit eval: %s\n", err);
        goto out;
    }
    cli_dataset_limit(ds, limit);
    const int N = cli_dataset_count(ds);
    if (cli_dataset_num_classes(ds) != C) {
        fprintf(stderr, "vit eval: internal: %d classes in the data, %d in the model\n",
                cli_dataset_num_classes(ds), C);
        goto out;
    }
    if (batch > N) batch = N;
    vit_session_opts so = {.max_batch = batch, .threads = threads, .device = device,
                           .precision = precision};
    if (cli_open_session("eval", m, &so, &s) != 0) goto out;
    char devname[32];
    snprintf(devname, sizeof devname, "%s %s",
             vit_session_device(s) == VIT_DEVICE_CUDA ? "cuda" : "cpu",
             vit_precision_str(vit_session_precision(s)));

    const vit_preprocess *pp = &cfg->preprocess;
    const size_t per = (size_t)3 * pp->out_h * pp->out_w;
    if (pp->out_h != cfg->image_size || pp->out_w != cfg->image_size) {
        fprintf(stderr, "vit eval: preprocessing makes %dx%d, the model runs at %d\n", pp->out_h,
                pp->out_w, cfg->image_size);
        goto out;
    }
    input = malloc(per * (size_t)batch * sizeof *input);          /* (B, 3, H, W) */
    logits = malloc((size_t)batch * C * sizeof *logits);          /* (B, C) */
    topi = malloc(EVAL_TOPK * sizeof *topi);
    k.confusion = calloc((size_t)C * C, sizeof *k.confusion);
    k.class_n = calloc((size_t)C, sizeof *k.class_n);
    k.class_top1 = calloc((size_t)C, sizeof *k.class_top1);
    int *labels = malloc((size_t)batch * sizeof *labels);
    sample_of = malloc((size_t)batch * sizeof *sample_of);
    if (!input || !logits || !topi || !k.confusion || !k.class_n || !k.class_top1 || !labels ||
        !sample_of) {
        fprintf(stderr, "vit eval: out of memory (batch %d, %d classes)\n", batch, C);
        free(labels);
        goto out;
    }
    if (pred_path && !(pred = fopen(pred_path, "w"))) {
        fprintf(stderr, "vit eval: %s: cannot open for writing\n", pred_path);
        free(labels);
        goto out;
    }
    const int topk = C < EVAL_TOPK ? C : EVAL_TOPK;
    const int tty = isatty(2);
    double t0 = vit_now(), fwd = 0;
    int next = 0, failed_shown = 0;
    while (next < N) {
        int b = 0;
        while (b < batch && next < N) {
            int i = next++;
            char ierr[256] = "";
            vit_status ist = cli_dataset_tensor(ds, i, pp, (uint64_t)max_pixels,
                                                input + (size_t)b * per, ierr, sizeof ierr);
            if (ist) {
                char nb[600];
                if (failed_shown++ < EVAL_MAX_FAIL_SHOWN)
                    fprintf(stderr, "%svit eval: %s: %s: %s\n", tty ? "\r" : "",
                            cli_dataset_sample_name(ds, i, nb, sizeof nb), vit_status_str(ist), ierr);
                k.failed++;
                continue;
            }
            sample_of[b] = i;
            labels[b++] = cli_dataset_label(ds, i);
        }
        if (b == 0) continue;
        vit_outputs o = {.logits = logits};
        double tf = vit_now();
        st = vit_forward(s, input, b, NULL, &o);
        fwd += vit_now() - tf;
        if (st) {
            fprintf(stderr, "%svit eval: forward: %s: %s\n", tty ? "\n" : "", vit_status_str(st),
                    vit_session_errmsg(s));
            free(labels);
            goto out;
        }
        for (int j = 0; j < b; j++) {
            int n = vit_topk(logits + (size_t)j * C, C, topk, topi);
            int y = labels[j];
            k.n++;
            k.class_n[y]++;
            k.confusion[(size_t)y * C + topi[0]]++;
            if (topi[0] == y) { k.top1++; k.class_top1[y]++; }
            for (int t = 0; t < n; t++)
                if (topi[t] == y) { k.top5++; break; }
            if (pred) {
                char nb[600];
                fprintf(pred, "%s\t%d\t%d\n", cli_dataset_sample_name(ds, sample_of[j], nb, sizeof nb),
                        y, topi[0]);
            }
        }
        if (tty) progress(k.n + k.failed, N, vit_now() - t0);
    }
    double secs = vit_now() - t0;
    if (tty) fprintf(stderr, "\n");
    free(labels);
    if (k.failed > EVAL_MAX_FAIL_SHOWN)
        fprintf(stderr, "vit eval: %d images failed in all (first %d shown)\n", k.failed,
                EVAL_MAX_FAIL_SHOWN);
    if (k.n == 0) {
        fprintf(stderr, "vit eval: no image could be evaluated\n");
        goto out;
    }
    if (json) {
        if (print_json(model_dir, data, ds, cfg, &k, C, topk, force_confusion || C <= 100, secs,
                       fwd, batch, devname)) {
            fprintf(stderr, "vit eval: out of memory writing JSON\n");
            goto out;
        }
    } else {
        print_text(model_dir, data, ds, cfg, &k, C, topk, force_confusion || C <= 20, secs, fwd,
                   batch, devname);
    }
    rc = k.failed ? 1 : 0;
out:
    if (pred && fclose(pred) != 0) {
        fprintf(stderr, "vit eval: %s: write failed\n", pred_path);
        rc = 1;
    }
    free(sample_of);
    free(input);
    free(logits);
    free(topi);
    free(k.confusion);
    free(k.class_n);
    free(k.class_top1);
    cli_dataset_free(ds);
    vit_session_free(s);
    vit_model_free(m);
    return rc;
}
