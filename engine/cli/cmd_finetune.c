/* cmd_finetune.c: `vit finetune`: teach a model new labels offline.  Extracts the features
 * (the pooled representation feeding the head) of every image of an ImageFolder with the
 * engine, trains a new linear head on them (engine/train/train.c) and writes a complete model
 * directory with that head.
 *   vit finetune --model DIR --data IMAGEFOLDER --out NEWDIR [--epochs N] [--lr F]
 *                [--batch-size N] [--optimizer adamw|sgd] [--weight-decay F] [--momentum F]
 *                [--labels replace|extend] [--val-fraction F] [--seed N] [--threads N]
 *                [--device auto|cpu|cuda] [--progress | --no-progress]
 * --device picks where the features are extracted and the head is trained (auto: CUDA when built
 * in and a GPU is present, else the CPU; training follows the session's device).
 * IMAGEFOLDER has one subfolder per label (its name is the label; with --labels extend a folder
 * named like an existing label, or like it with '/' and ' ' written '_', trains that row).
 * Unreadable images are reported on stderr and skipped.  On a terminal a progress line (rate,
 * ETA) follows the feature pass and the training; in a pipe only the per-epoch lines are printed
 * unless --progress asks for the progress lines (--no-progress: never).
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
            "  --progress | --no-progress  progress lines with rate and ETA (default: on a terminal)\n"
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

/* per-epoch progress: the progress line when it is on, else one plain line per epoch */
static void on_epoch(void *ctx, int epoch, int epochs, float loss, float val) {
    cli_progress *bar = ctx;
    if (bar->on) {
        char extra[96];
        if (val >= 0) snprintf(extra, sizeof extra, "loss %.4f  val_accuracy %.2f%%", loss, 100.0 * val);
        else snprintf(extra, sizeof extra, "loss %.4f", loss);
        cli_progress_update(bar, epoch, epochs, extra);
        return;
    }
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

typedef struct {
    const char *model_dir, *data, *out_dir;
    int threads, progress;       /* progress: -1 on a terminal, 0 never, 1 always */
    vit_device device;
    vit_label_mode mode;
    vit_train_opts o;
} ft_args;

/* one option with its value v; 0 ok, 2 bad (reported) */
static int ft_option(ft_args *f, const char *a, const char *v) {
    vit_train_opts *o = &f->o;
    if (!strcmp(a, "--model")) f->model_dir = v;
    else if (!strcmp(a, "--data")) f->data = v;
    else if (!strcmp(a, "--out")) f->out_dir = v;
    else if (!strcmp(a, "--epochs")) { if ((o->epochs = cli_parse_int(a, v, 1, 100000)) < 0) return 2; }
    else if (!strcmp(a, "--batch-size")) { if ((o->batch_size = cli_parse_int(a, v, 1, 65536)) < 0) return 2; }
    else if (!strcmp(a, "--threads")) { if ((f->threads = cli_parse_int(a, v, 0, 1024)) < 0) return 2; }
    else if (!strcmp(a, "--seed")) { int s = cli_parse_int(a, v, 0, 2147483647); if (s < 0) return 2; o->seed = (uint64_t)s; }
    else if (!strcmp(a, "--device")) { if (cli_parse_device(v, &f->device)) return 2; }
    else if (!strcmp(a, "--lr")) { if (parse_float(a, v, 1e-12f, 100.f, &o->lr)) return 2; }
    else if (!strcmp(a, "--weight-decay")) { if (parse_float(a, v, 0.f, 100.f, &o->weight_decay)) return 2; }
    else if (!strcmp(a, "--momentum")) { if (parse_float(a, v, 0.f, 0.999f, &o->momentum)) return 2; }
    else if (!strcmp(a, "--val-fraction")) { if (parse_float(a, v, 0.f, 0.9f, &o->val_fraction)) return 2; }
    else if (!strcmp(a, "--optimizer")) {
        if (!strcmp(v, "adamw")) o->optimizer = VIT_OPT_ADAMW;
        else if (!strcmp(v, "sgd")) o->optimizer = VIT_OPT_SGD;
        else { fprintf(stderr, "vit finetune: --optimizer: adamw or sgd, got '%s'\n", v); return 2; }
    } else if (!strcmp(a, "--labels")) {
        if (!strcmp(v, "replace")) f->mode = VIT_LABELS_REPLACE;
        else if (!strcmp(v, "extend")) f->mode = VIT_LABELS_EXTEND;
        else { fprintf(stderr, "vit finetune: --labels: replace or extend, got '%s'\n", v); return 2; }
    } else {
        fprintf(stderr, "vit finetune: unknown option '%s'\n", a);
        cli_suggest_option("finetune", a, usage);
        return 2;
    }
    return 0;
}

/* 0 parsed, -1 --help (printed), else the exit status */
static int ft_parse(int argc, char **argv, ft_args *f) {
    *f = (ft_args){.progress = -1, .device = VIT_DEVICE_AUTO, .mode = VIT_LABELS_REPLACE};
    vit_train_opts_default(&f->o);
    f->o.epochs = 30;            /* the admin API's defaults (server/admin_parse.c) */
    f->o.lr = 3e-3f;
    f->o.weight_decay = 1e-4f;
    f->o.val_fraction = 0.1f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return -1; }
        if (!strcmp(a, "--progress") || !strcmp(a, "--no-progress")) { f->progress = a[2] == 'p'; continue; }
        if (!v || a[0] != '-') return cli_unknown_option("finetune", a, usage, NULL);
        i++;
        int rc = ft_option(f, a, v);
        if (rc) return rc;
    }
    if (!f->model_dir || !f->data || !f->out_dir) {
        usage(stderr);
        return 2;
    }
    struct stat s_src, s_out;
    if (stat(f->model_dir, &s_src) == 0 && stat(f->out_dir, &s_out) == 0 && s_src.st_dev == s_out.st_dev &&
        s_src.st_ino == s_out.st_ino) {
        fprintf(stderr, "vit finetune: --out %s is the source model directory\n", f->out_dir);
        return 2;
    }
    return 0;
}

/* the ImageFolder's images and their labels */
typedef struct {
    strvec classes, files;
    int32_t *file_class;         /* (files.n) index into names */
    const char **names;          /* (ncls) the label each class folder trains */
    int ncls;
} ft_data;

static void ft_data_free(ft_data *d) {
    sv_free(&d->classes);
    sv_free(&d->files);
    free(d->names);
    free(d->file_class);
}

/* classes = sorted subfolders with at least one image; 0 ok, else the exit status (reported) */
static int ft_list(const char *data, const vit_head *base, ft_data *d) {
    if (list_dir(data, 1, &d->classes) != 0 || d->classes.n == 0 || d->classes.n > MAX_CLASSES) {
        fprintf(stderr, "vit finetune: %s: no class subfolders (or cannot read it)\n", data);
        return 3;
    }
    d->names = calloc((size_t)d->classes.n, sizeof *d->names);
    int cap_files = 0;
    for (int c = 0; c < d->classes.n; c++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", data, d->classes.v[c]);
        int before = d->files.n;
        strvec one = {0};
        if (list_dir(p, 0, &one) != 0) { sv_free(&one); continue; }
        for (int k = 0; k < one.n; k++) {
            char fp[8192];
            snprintf(fp, sizeof fp, "%s/%s", p, one.v[k]);
            if (d->files.n >= MAX_IMAGES || sv_push(&d->files, fp) != 0) break;
            if (d->files.n > cap_files) {
                cap_files = d->files.cap;
                int32_t *nc = realloc(d->file_class, sizeof(int32_t) * (size_t)cap_files);
                if (!nc) { sv_free(&one); fprintf(stderr, "vit finetune: out of memory\n"); return 1; }
                d->file_class = nc;
            }
            d->file_class[d->files.n - 1] = d->ncls;
        }
        sv_free(&one);
        if (d->files.n == before) {
            fprintf(stderr, "vit finetune: %s: no images, skipped\n", p);
            continue;
        }
        d->names[d->ncls++] = folder_label(base, d->classes.v[c]);
    }
    if (d->files.n == 0 || !d->names) {
        fprintf(stderr, "vit finetune: %s: no images (.png, .jpg, .jpeg) in its class folders\n", data);
        return 3;
    }
    return 0;
}

/* features (N, D) and class indices (N) of every readable image, FEAT_BATCH at a time;
 * 0 ok (*n_out images, *bad_out skipped), 1 failed (reported) */
static int ft_features(vit_session *s, const vit_config *cfg, const ft_data *d, int progress, float *feat,
                       int32_t *y, int *n_out, int *bad_out) {
    const int D = cfg->feature_dim, S = cfg->image_h, S2 = cfg->image_w, CH = cfg->num_channels;
    float *x = malloc(sizeof(float) * (size_t)FEAT_BATCH * CH * (size_t)S * (size_t)S2);   /* (B, CH, S, S2) */
    float *fb = malloc(sizeof(float) * (size_t)FEAT_BATCH * (size_t)D);                  /* (B, D) */
    uint8_t *bytes = NULL;
    char err[512] = "";
    int N = 0, bad = 0, slot_cls[FEAT_BATCH], rc = 1;
    if (!x || !fb) { fprintf(stderr, "vit finetune: out of memory\n"); goto out; }
    cli_progress bar;
    cli_progress_start(&bar, progress, "images");
    double t0 = vit_now();
    for (int i = 0; i < d->files.n;) {
        int B = 0;
        for (; i < d->files.n && B < FEAT_BATCH; i++) {
            size_t len;
            free(bytes);
            bytes = NULL;
            vit_status st = vit_read_file(d->files.v[i], MAX_IMAGE_BYTES, &bytes, &len, err, sizeof err);
            if (st == VIT_OK)
                st = vit_image_load(bytes, len, &cfg->preprocess, VIT_DEFAULT_MAX_PIXELS,
                                    x + (size_t)B * CH * S * S2, err, sizeof err);
            if (st != VIT_OK) {
                fprintf(stderr, "%svit finetune: %s: %s (skipped)\n", bar.drawn && bar.tty ? "\n" : "", d->files.v[i], err);
                bad++;
                continue;
            }
            slot_cls[B++] = d->file_class[i];
        }
        if (B > 0) {
            vit_outputs outs = { .features = fb };
            if (vit_forward(s, x, B, NULL, &outs) != VIT_OK) {
                cli_progress_end(&bar);
                fprintf(stderr, "vit finetune: forward: %s\n", vit_session_errmsg(s));
                goto out;
            }
            memcpy(feat + (size_t)N * D, fb, sizeof(float) * (size_t)B * D);
            for (int b = 0; b < B; b++) y[N + b] = slot_cls[b];
            N += B;
        }
        cli_progress_update(&bar, i, d->files.n, NULL);
    }
    cli_progress_end(&bar);
    if (N == 0) {
        fprintf(stderr, "vit finetune: no image could be read\n");
        goto out;
    }
    fprintf(stderr, "features: %d images (%d skipped), %d labels, dim %d, %.1f images/s\n", N, bad,
            d->ncls, D, N / (vit_now() - t0 + 1e-9));
    *n_out = N;
    *bad_out = bad;
    rc = 0;
out:
    free(x);
    free(fb);
    free(bytes);
    return rc;
}

static void ft_print_summary(const char *out_dir, int N, int bad, const vit_head *trained,
                             const vit_train_result *res) {
    cJSON *sum = cJSON_CreateObject();
    cJSON_AddStringToObject(sum, "out", out_dir);
    cJSON_AddNumberToObject(sum, "examples", N);
    cJSON_AddNumberToObject(sum, "skipped", bad);
    cJSON_AddNumberToObject(sum, "labels", vit_head_num_classes(trained));
    cJSON_AddNumberToObject(sum, "train", res->n_train);
    cJSON_AddNumberToObject(sum, "val", res->n_val);
    cJSON_AddNumberToObject(sum, "loss", res->loss);
    cJSON_AddNumberToObject(sum, "train_accuracy", res->train_accuracy);
    cJSON_AddNumberToObject(sum, "val_accuracy", res->val_accuracy);
    cJSON_AddStringToObject(sum, "device", res->device == VIT_DEVICE_CUDA ? "cuda" : "cpu");
    char *txt = cJSON_PrintUnformatted(sum);
    if (txt) printf("%s\n", txt);
    free(txt);
    cJSON_Delete(sum);
}

/* train a head on the features and write the new model directory; 0 ok, else the exit status */
static int ft_train_save(const ft_args *f, const vit_model *m, const ft_data *d, const float *feat,
                         int32_t *y, int N, int bad) {
    char err[512] = "";
    vit_head *init = NULL, *trained = NULL;
    int32_t *map = malloc(sizeof(int32_t) * (size_t)d->ncls);
    int rc = 1;
    vit_status st;
    if (!map) { fprintf(stderr, "vit finetune: out of memory\n"); return 1; }
    if ((st = vit_head_init_for_training(vit_model_head(m), f->mode, d->names, d->ncls,
                                         vit_model_config(m)->feature_dim, &init, map, err, sizeof err)) != VIT_OK) {
        fprintf(stderr, "vit finetune: %s\n", err);
        goto out;
    }
    for (int i = 0; i < N; i++) y[i] = map[y[i]];
    vit_train_opts o = f->o;
    cli_progress bar;
    cli_progress_start(&bar, f->progress, "epochs");
    o.progress = on_epoch;
    o.cb_ctx = &bar;
    vit_train_result res;
    st = vit_head_train(init, feat, y, N, &o, &trained, &res, err, sizeof err);
    cli_progress_end(&bar);
    if (st != VIT_OK) {
        fprintf(stderr, "vit finetune: %s\n", err);
        rc = cli_exit_status(st);
        goto out;
    }
    if ((st = vit_model_save_with_head(f->model_dir, trained, f->out_dir, err, sizeof err)) != VIT_OK) {
        fprintf(stderr, "vit finetune: %s\n", err);
        rc = st == VIT_E_IO ? 3 : 1;
        goto out;
    }
    ft_print_summary(f->out_dir, N, bad, trained, &res);
    rc = 0;
out:
    vit_head_release(trained);
    vit_head_release(init);
    free(map);
    return rc;
}

int cmd_finetune(int argc, char **argv) {
    ft_args f;
    int rc = ft_parse(argc, argv, &f);
    if (rc) return rc < 0 ? 0 : rc;
    vit_model *m = NULL;
    vit_session *s = NULL;
    ft_data d = {0};
    float *feat = NULL;
    int32_t *y = NULL;
    if ((rc = cli_load_model("finetune", f.model_dir, NULL, &m)) != 0) return rc;
    const vit_config *cfg = vit_model_config(m);
    vit_session_opts so = { .max_batch = FEAT_BATCH, .threads = f.threads, .device = f.device };
    if ((rc = cli_open_session("finetune", m, &so, &s)) != 0) goto out;
    f.o.device = vit_session_device(s);   /* the head trains where the model runs */
    if ((rc = ft_list(f.data, f.mode == VIT_LABELS_EXTEND ? vit_model_head(m) : NULL, &d)) != 0) goto out;
    rc = 1;
    feat = malloc(sizeof(float) * (size_t)d.files.n * (size_t)cfg->feature_dim);   /* (N, D) */
    y = malloc(sizeof(int32_t) * (size_t)d.files.n);                               /* (N) */
    if (!feat || !y) { fprintf(stderr, "vit finetune: out of memory\n"); goto out; }
    int N = 0, bad = 0;
    if (ft_features(s, cfg, &d, f.progress, feat, y, &N, &bad) != 0) goto out;
    rc = ft_train_save(&f, m, &d, feat, y, N, bad);
out:
    vit_session_free(s);
    vit_model_free(m);
    ft_data_free(&d);
    free(feat);
    free(y);
    return rc;
}
