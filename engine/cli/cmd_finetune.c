/* cmd_finetune.c: `vit finetune`: teach a model new labels offline.  Extracts the features
 * (the pooled representation feeding the head) of every image of an ImageFolder with the
 * engine, trains a new linear head on them (engine/train/train.c) and writes a complete model
 * directory with that head.
 *   vit finetune --model DIR --data IMAGEFOLDER --out NEWDIR [--epochs N] [--lr F]
 *                [--batch-size N] [--optimizer adamw|sgd] [--weight-decay F] [--momentum F]
 *                [--labels replace|extend] [--val-fraction F] [--seed N] [--threads N]
 *                [--device auto|cpu|cuda]
 * --device picks where the features are extracted and the head is trained (auto: CUDA when built
 * in and a GPU is present, else the CPU; training follows the session's device).
 * IMAGEFOLDER has one subfolder per label (its name is the label; with --labels extend a folder
 * named like an existing label, or like it with '/' and ' ' written '_', trains that row).
 * Unreadable images are reported on stderr and skipped.
 * Exit status: 0 ok, 2 usage, 3 i/o, 8 device not available, 1 other. */
#include <cJSON.h>
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "util.h"

#define MAX_IMAGE_BYTES ((size_t)64 << 20)
#define MAX_IMAGES      2000000
#define MAX_CLASSES     100000
#define FEAT_BATCH      16

typedef struct {
    char **v;
    int n, cap;
} strvec;

static int sv_push(strvec *s, const char *x) {
    if (s->n == s->cap) {
        int nc = s->cap ? 2 * s->cap : 64;
        char **nv = realloc(s->v, sizeof(char *) * (size_t)nc);
        if (!nv) return -1;
        s->v = nv;
        s->cap = nc;
    }
    if (!(s->v[s->n] = strdup(x))) return -1;
    s->n++;
    return 0;
}

static void sv_free(strvec *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_image_name(const char *n) {
    const char *dot = strrchr(n, '.');
    if (!dot || n[0] == '.') return 0;
    char ext[8] = {0};
    for (int i = 0; i < 7 && dot[1 + i]; i++) ext[i] = (char)tolower((unsigned char)dot[1 + i]);
    return !strcmp(ext, "png") || !strcmp(ext, "jpg") || !strcmp(ext, "jpeg");
}

/* sorted entries of dir: subdirectories (want_dirs) or image files */
static int list_dir(const char *dir, int want_dirs, strvec *out) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    char p[4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) != 0) continue;
        if (want_dirs ? S_ISDIR(st.st_mode) : (S_ISREG(st.st_mode) && is_image_name(e->d_name)))
            if (sv_push(out, e->d_name) != 0) { closedir(d); return -1; }
        if (out->n > MAX_IMAGES) break;
    }
    closedir(d);
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return 0;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: vit finetune --model DIR --data IMAGEFOLDER --out NEWDIR [options]\n"
            "  --epochs N          (30)           --lr F             (0.003)\n"
            "  --batch-size N      (32)           --optimizer adamw|sgd (adamw)\n"
            "  --weight-decay F    (0.0001)       --momentum F       (0.9, sgd)\n"
            "  --labels replace|extend (replace)  --val-fraction F   (0.1)\n"
            "  --seed N            (0)            --threads N        (all cores)\n"
            "  --device auto|cpu|cuda (auto: the GPU when there is one; features and training)\n"
            "  replace: the new head has exactly the folder labels, zero-initialised;\n"
            "  extend: the model's labels keep their rows, new folder labels get zero rows.\n");
}

static int parse_float(const char *name, const char *v, float lo, float hi, float *out) {
    char *end;
    double d = v ? strtod(v, &end) : 0;
    if (!v || !*v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "vit finetune: %s: expected a number in [%g, %g], got '%s'\n", name, lo, hi,
                v ? v : "");
        return -1;
    }
    *out = (float)d;
    return 0;
}

static void on_epoch(void *ctx, int epoch, int epochs, float loss, float val) {
    (void)ctx;
    if (val >= 0)
        fprintf(stderr, "epoch %d/%d  loss %.4f  val_accuracy %.2f%%\n", epoch, epochs, loss, 100.0 * val);
    else
        fprintf(stderr, "epoch %d/%d  loss %.4f\n", epoch, epochs, loss);
}

/* the label a folder trains: an existing label it names (exactly or file-system-safe), or itself */
static const char *folder_label(const vit_head *base, const char *folder) {
    for (int c = 0; base && c < vit_head_num_classes(base); c++) {
        const char *l = vit_head_label(base, c);
        if (!strcmp(l, folder)) return l;
        size_t n = strlen(l);
        if (n != strlen(folder)) continue;
        size_t k = 0;
        for (; k < n; k++) {
            char a = l[k] == '/' || l[k] == ' ' ? '_' : l[k];
            if (a != folder[k]) break;
        }
        if (k == n) return l;
    }
    return folder;
}

int cmd_finetune(int argc, char **argv) {
    const char *model_dir = NULL, *data = NULL, *out_dir = NULL;
    int threads = 0, rc = 1;
    vit_device device = VIT_DEVICE_AUTO;
    vit_label_mode mode = VIT_LABELS_REPLACE;
    vit_train_opts o;
    vit_train_opts_default(&o);
    o.epochs = 30;               /* the admin API's defaults (server/admin.c) */
    o.lr = 3e-3f;
    o.weight_decay = 1e-4f;
    o.val_fraction = 0.1f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!v || a[0] != '-') {
            fprintf(stderr, "vit finetune: unknown or incomplete option '%s'\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--model")) model_dir = v;
        else if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--out")) out_dir = v;
        else if (!strcmp(a, "--epochs")) { if ((o.epochs = cli_parse_int(a, v, 1, 100000)) < 0) return 2; }
        else if (!strcmp(a, "--batch-size")) { if ((o.batch_size = cli_parse_int(a, v, 1, 65536)) < 0) return 2; }
        else if (!strcmp(a, "--threads")) { if ((threads = cli_parse_int(a, v, 0, 1024)) < 0) return 2; }
        else if (!strcmp(a, "--seed")) { int s = cli_parse_int(a, v, 0, 2147483647); if (s < 0) return 2; o.seed = (uint64_t)s; }
        else if (!strcmp(a, "--device")) { if (cli_parse_device(v, &device)) return 2; }
        else if (!strcmp(a, "--lr")) { if (parse_float(a, v, 1e-12f, 100.f, &o.lr)) return 2; }
        else if (!strcmp(a, "--weight-decay")) { if (parse_float(a, v, 0.f, 100.f, &o.weight_decay)) return 2; }
        else if (!strcmp(a, "--momentum")) { if (parse_float(a, v, 0.f, 0.999f, &o.momentum)) return 2; }
        else if (!strcmp(a, "--val-fraction")) { if (parse_float(a, v, 0.f, 0.9f, &o.val_fraction)) return 2; }
        else if (!strcmp(a, "--optimizer")) {
            if (!strcmp(v, "adamw")) o.optimizer = VIT_OPT_ADAMW;
            else if (!strcmp(v, "sgd")) o.optimizer = VIT_OPT_SGD;
            else { fprintf(stderr, "vit finetune: --optimizer: adamw or sgd, got '%s'\n", v); return 2; }
        } else if (!strcmp(a, "--labels")) {
            if (!strcmp(v, "replace")) mode = VIT_LABELS_REPLACE;
            else if (!strcmp(v, "extend")) mode = VIT_LABELS_EXTEND;
            else { fprintf(stderr, "vit finetune: --labels: replace or extend, got '%s'\n", v); return 2; }
        } else {
            fprintf(stderr, "vit finetune: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!model_dir || !data || !out_dir) {
        usage(stderr);
        return 2;
    }

    struct stat s_src, s_out;
    if (stat(model_dir, &s_src) == 0 && stat(out_dir, &s_out) == 0 && s_src.st_dev == s_out.st_dev &&
        s_src.st_ino == s_out.st_ino) {
        fprintf(stderr, "vit finetune: --out %s is the source model directory\n", out_dir);
        return 2;
    }
    char err[512] = "";
    vit_model *m = NULL;
    vit_session *s = NULL;
    vit_head *init = NULL, *trained = NULL;
    strvec classes = {0}, files = {0};
    float *x = NULL, *feat = NULL, *fb = NULL;
    int32_t *y = NULL, *map = NULL, *file_class = NULL;
    const char **names = NULL;
    uint8_t *bytes = NULL;
    vit_status st;
    if ((rc = cli_load_model("finetune", model_dir, NULL, &m)) != 0) return rc;
    rc = 1;
    const vit_config *cfg = vit_model_config(m);
    const int D = cfg->feature_dim, S = cfg->image_h;   /* S x S2: the model's input */
    const int S2 = cfg->image_w;
    vit_session_opts so = { .max_batch = FEAT_BATCH, .threads = threads, .device = device };
    if ((rc = cli_open_session("finetune", m, &so, &s)) != 0) goto out;
    rc = 1;
    o.device = vit_session_device(s);   /* the head trains where the model runs */

    /* the ImageFolder: classes = sorted subfolders with at least one image */
    if (list_dir(data, 1, &classes) != 0 || classes.n == 0 || classes.n > MAX_CLASSES) {
        fprintf(stderr, "vit finetune: %s: no class subfolders (or cannot read it)\n", data);
        rc = 3;
        goto out;
    }
    names = calloc((size_t)classes.n, sizeof *names);
    file_class = NULL;
    int ncls = 0, cap_files = 0;
    for (int c = 0; c < classes.n; c++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", data, classes.v[c]);
        int before = files.n;
        strvec one = {0};
        if (list_dir(p, 0, &one) != 0) { sv_free(&one); continue; }
        for (int k = 0; k < one.n; k++) {
            char fp[8192];
            snprintf(fp, sizeof fp, "%s/%s", p, one.v[k]);
            if (files.n >= MAX_IMAGES || sv_push(&files, fp) != 0) break;
            if (files.n > cap_files) {
                cap_files = files.cap;
                int32_t *nc = realloc(file_class, sizeof(int32_t) * (size_t)cap_files);
                if (!nc) { sv_free(&one); fprintf(stderr, "vit finetune: out of memory\n"); goto out; }
                file_class = nc;
            }
            file_class[files.n - 1] = ncls;
        }
        sv_free(&one);
        if (files.n == before) {
            fprintf(stderr, "vit finetune: %s: no images, skipped\n", p);
            continue;
        }
        names[ncls++] = folder_label(mode == VIT_LABELS_EXTEND ? vit_model_head(m) : NULL, classes.v[c]);
    }
    if (files.n == 0 || !names) {
        fprintf(stderr, "vit finetune: %s: no images (.png, .jpg, .jpeg) in its class folders\n", data);
        rc = 3;
        goto out;
    }

    /* features (N, D) of every readable image, FEAT_BATCH at a time */
    const int CH = cfg->num_channels;
    x = malloc(sizeof(float) * (size_t)FEAT_BATCH * CH * (size_t)S * (size_t)S2);
    fb = malloc(sizeof(float) * (size_t)FEAT_BATCH * (size_t)D);
    feat = malloc(sizeof(float) * (size_t)files.n * (size_t)D);
    y = malloc(sizeof(int32_t) * (size_t)files.n);
    map = malloc(sizeof(int32_t) * (size_t)ncls);
    if (!x || !fb || !feat || !y || !map) { fprintf(stderr, "vit finetune: out of memory\n"); goto out; }
    int N = 0, bad = 0, slot_cls[FEAT_BATCH];
    double t0 = vit_now();
    for (int i = 0; i < files.n;) {
        int B = 0;
        for (; i < files.n && B < FEAT_BATCH; i++) {
            size_t len;
            free(bytes);
            bytes = NULL;
            st = vit_read_file(files.v[i], MAX_IMAGE_BYTES, &bytes, &len, err, sizeof err);
            if (st == VIT_OK)
                st = vit_image_load(bytes, len, &cfg->preprocess, VIT_DEFAULT_MAX_PIXELS,
                                    x + (size_t)B * CH * S * S2, err, sizeof err);
            if (st != VIT_OK) {
                fprintf(stderr, "vit finetune: %s: %s (skipped)\n", files.v[i], err);
                bad++;
                continue;
            }
            slot_cls[B++] = file_class[i];
        }
        if (B == 0) continue;
        vit_outputs outs = { .features = fb };
        if ((st = vit_forward(s, x, B, NULL, &outs)) != VIT_OK) {
            fprintf(stderr, "vit finetune: forward: %s\n", vit_session_errmsg(s));
            goto out;
        }
        memcpy(feat + (size_t)N * D, fb, sizeof(float) * (size_t)B * D);
        for (int b = 0; b < B; b++) y[N + b] = slot_cls[b];
        N += B;
    }
    if (N == 0) {
        fprintf(stderr, "vit finetune: no image could be read\n");
        goto out;
    }
    fprintf(stderr, "features: %d images (%d skipped), %d labels, dim %d, %.1f images/s\n", N, bad,
            ncls, D, N / (vit_now() - t0 + 1e-9));

    if ((st = vit_head_init_for_training(vit_model_head(m), mode, names, ncls, D, &init, map, err,
                                         sizeof err)) != VIT_OK) {
        fprintf(stderr, "vit finetune: %s\n", err);
        goto out;
    }
    for (int i = 0; i < N; i++) y[i] = map[y[i]];
    o.progress = on_epoch;
    vit_train_result res;
    if ((st = vit_head_train(init, feat, y, N, &o, &trained, &res, err, sizeof err)) != VIT_OK) {
        fprintf(stderr, "vit finetune: %s\n", err);
        rc = cli_exit_status(st);
        goto out;
    }
    if ((st = vit_model_save_with_head(model_dir, trained, out_dir, err, sizeof err)) != VIT_OK) {
        fprintf(stderr, "vit finetune: %s\n", err);
        rc = st == VIT_E_IO ? 3 : 1;
        goto out;
    }
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddStringToObject(sum, "out", out_dir);
    cJSON_AddNumberToObject(sum, "examples", N);
    cJSON_AddNumberToObject(sum, "skipped", bad);
    cJSON_AddNumberToObject(sum, "labels", vit_head_num_classes(trained));
    cJSON_AddNumberToObject(sum, "train", res.n_train);
    cJSON_AddNumberToObject(sum, "val", res.n_val);
    cJSON_AddNumberToObject(sum, "loss", res.loss);
    cJSON_AddNumberToObject(sum, "train_accuracy", res.train_accuracy);
    cJSON_AddNumberToObject(sum, "val_accuracy", res.val_accuracy);
    cJSON_AddStringToObject(sum, "device", res.device == VIT_DEVICE_CUDA ? "cuda" : "cpu");
    char *txt = cJSON_PrintUnformatted(sum);
    if (txt) printf("%s\n", txt);
    free(txt);
    cJSON_Delete(sum);
    rc = 0;
out:
    vit_head_release(trained);
    vit_head_release(init);
    vit_session_free(s);
    vit_model_free(m);
    sv_free(&classes);
    sv_free(&files);
    free(names);
    free(file_class);
    free(x);
    free(fb);
    free(feat);
    free(y);
    free(map);
    free(bytes);
    return rc;
}
