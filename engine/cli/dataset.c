/* dataset.c: ImageFolder and IDX (MNIST format) labelled image sets; see dataset.h. */
#include "dataset.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <zlib.h>

#include "util.h"

#define MAX_IMAGE_FILE_BYTES ((size_t)256 << 20)   /* one image file */
#define MAX_IDX_BYTES ((size_t)4 << 30)            /* uncompressed IDX file */
#define MAX_IDX_SIDE 65536
#define MAX_CLASSES 100000

typedef struct {
    char *path;
    int label;
} sample;

struct cli_dataset {
    int is_idx;
    int num_classes;
    char **class_names;      /* num_classes */
    /* ImageFolder */
    sample *samples;
    int n_samples;           /* entries in samples (count may be less after a limit) */
    int count;
    /* IDX */
    char *idx_path;
    uint8_t *idx_data;       /* whole images file, uncompressed */
    const uint8_t *pixels;   /* (n, h, w[, 3]) */
    int idx_h, idx_w, idx_c;
    uint8_t *idx_labels;     /* (n) */
    int *order;              /* sample i -> record index (identity unless limited) */
    uint8_t *rgb;            /* (h, w, 3) scratch for one IDX image */
};

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* lower-case alphanumerics only: "T-shirt/top" -> "tshirttop" */
static void normalize(const char *s, size_t n, char *out, size_t outlen) {
    size_t j = 0;
    for (size_t i = 0; i < n && s[i] && j + 1 < outlen; i++)
        if (isalnum((unsigned char)s[i])) out[j++] = (char)tolower((unsigned char)s[i]);
    out[j] = 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_image_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    return !strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg");
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* sorted, non-hidden entries of dir; want_dirs selects subdirectories or image files */
static vit_status list_dir(const char *dir, int want_dirs, char ***out, int *n, char *err,
                           size_t errlen) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return vit_errf(VIT_E_IO, err, errlen, "%s: %s", dir, strerror(errno));
    char **v = NULL;
    int cnt = 0, cap = 0;
    vit_status st = VIT_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        size_t pl = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(pl);
        if (!p) { st = VIT_E_NOMEM; break; }
        snprintf(p, pl, "%s/%s", dir, e->d_name);
        int keep = want_dirs ? is_dir(p) : (!is_dir(p) && has_image_ext(e->d_name));
        if (!keep) { free(p); continue; }
        if (cnt == cap) {
            cap = cap ? cap * 2 : 64;
            char **nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) { free(p); st = VIT_E_NOMEM; break; }
            v = nv;
        }
        v[cnt++] = p;
        if (cnt > 100000000) { st = VIT_E_ARG; break; }
    }
    closedir(d);
    if (st != VIT_OK) {
        for (int i = 0; i < cnt; i++) free(v[i]);
        free(v);
        return vit_errf(st, err, errlen, "%s: cannot list directory", dir);
    }
    if (cnt) qsort(v, (size_t)cnt, sizeof *v, cmp_str);
    *out = v;
    *n = cnt;
    return VIT_OK;
}

/* class index of a folder name, -1 if none, -2 if ambiguous */
static int match_label(const char *folder, char *const *labels, int num_labels) {
    char nf[512], nl[512];
    normalize(folder, strlen(folder), nf, sizeof nf);
    if (!nf[0]) return -1;
    int found = -1;
    for (int c = 0; c < num_labels; c++) {          /* whole label */
        normalize(labels[c], strlen(labels[c]), nl, sizeof nl);
        if (!strcmp(nf, nl)) {
            if (found >= 0) return -2;
            found = c;
        }
    }
    if (found >= 0) return found;
    for (int c = 0; c < num_labels; c++) {          /* one of its comma-separated names */
        const char *s = labels[c];
        if (!strchr(s, ',')) continue;
        while (*s) {
            size_t len = strcspn(s, ",");
            normalize(s, len, nl, sizeof nl);
            if (!strcmp(nf, nl)) {
                if (found >= 0 && found != c) return -2;
                found = c;
            }
            s += len;
            if (*s == ',') s++;
        }
    }
    if (found >= 0) return found;
    const char *p = folder;                          /* an index "0".."C-1" */
    if (!*p) return -1;
    long v = 0;
    for (; *p; p++) {
        if (!isdigit((unsigned char)*p)) return -1;
        v = v * 10 + (*p - '0');
        if (v >= num_labels) return -1;
    }
    return (int)v;
}

static vit_status open_folder(cli_dataset *d, const char *path, char *const *labels,
                              int num_labels, int by_order, char *err, size_t errlen) {
    char **dirs;
    int ndirs;
    vit_status st = list_dir(path, 1, &dirs, &ndirs, err, errlen);
    if (st) return st;
    int *cls = NULL;
    if (ndirs == 0) {
        st = vit_errf(VIT_E_ARG, err, errlen, "%s: no class subfolders (expected an ImageFolder: "
                      "one folder per class)", path);
        goto done;
    }
    if (ndirs > MAX_CLASSES) {
        st = vit_errf(VIT_E_ARG, err, errlen, "%s: %d subfolders, more than %d", path, ndirs,
                      MAX_CLASSES);
        goto done;
    }
    cls = malloc((size_t)ndirs * sizeof *cls);
    if (!cls) { st = VIT_E_NOMEM; goto done; }
    if (labels) {
        d->num_classes = num_labels;
        for (int i = 0; i < ndirs; i++) {
            const char *base = dirs[i] + strlen(path) + 1;
            if (by_order) {
                if (ndirs != num_labels) {
                    st = vit_errf(VIT_E_ARG, err, errlen, "%s: --by-order needs one folder per "
                                  "class: %d folders, model has %d classes", path, ndirs,
                                  num_labels);
                    goto done;
                }
                cls[i] = i;
                continue;
            }
            cls[i] = match_label(base, labels, num_labels);
            if (cls[i] == -2) {
                st = vit_errf(VIT_E_ARG, err, errlen, "%s: folder '%s' matches more than one "
                              "label of the model", path, base);
                goto done;
            }
            if (cls[i] < 0) {
                st = vit_errf(VIT_E_ARG, err, errlen, "%s: folder '%s' matches no label of the "
                              "model by name or index (labels: '%s' ... '%s'; or use --by-order)",
                              path, base, labels[0], labels[num_labels - 1]);
                goto done;
            }
            for (int j = 0; j < i; j++)
                if (cls[j] == cls[i]) {
                    st = vit_errf(VIT_E_ARG, err, errlen, "%s: folders '%s' and '%s' both match "
                                  "label '%s'", path, dirs[j] + strlen(path) + 1, base,
                                  labels[cls[i]]);
                    goto done;
                }
        }
    } else {
        d->num_classes = ndirs;
        for (int i = 0; i < ndirs; i++) cls[i] = i;
    }
    d->class_names = calloc((size_t)d->num_classes, sizeof *d->class_names);
    if (!d->class_names) { st = VIT_E_NOMEM; goto done; }
    for (int c = 0; c < d->num_classes; c++) {
        char num[16];
        snprintf(num, sizeof num, "%d", c);
        d->class_names[c] = xstrdup(labels ? labels[c] : num);
        if (!d->class_names[c]) { st = VIT_E_NOMEM; goto done; }
    }
    if (!labels)
        for (int i = 0; i < ndirs; i++) {
            free(d->class_names[i]);
            d->class_names[i] = xstrdup(dirs[i] + strlen(path) + 1);
            if (!d->class_names[i]) { st = VIT_E_NOMEM; goto done; }
        }
    int cap = 0;
    for (int i = 0; i < ndirs && st == VIT_OK; i++) {
        char **files;
        int nf;
        st = list_dir(dirs[i], 0, &files, &nf, err, errlen);
        if (st) break;
        for (int j = 0; j < nf; j++) {
            if (st == VIT_OK && d->count == cap) {
                cap = cap ? cap * 2 : 1024;
                sample *ns = realloc(d->samples, (size_t)cap * sizeof *ns);
                if (!ns) st = vit_errf(VIT_E_NOMEM, err, errlen, "out of memory listing %s", path);
                else d->samples = ns;
            }
            if (st == VIT_OK) {
                d->samples[d->count].path = files[j];
                d->samples[d->count].label = cls[i];
                d->count++;
                d->n_samples = d->count;
            } else {
                free(files[j]);
            }
        }
        free(files);
    }
    if (st == VIT_OK && d->count == 0)
        st = vit_errf(VIT_E_ARG, err, errlen, "%s: no *.png, *.jpg or *.jpeg files in the class "
                      "folders", path);
done:
    for (int i = 0; i < ndirs; i++) free(dirs[i]);
    free(dirs);
    free(cls);
    return st;
}

/* whole file, gunzipped if it starts with the gzip magic, at most MAX_IDX_BYTES */
static vit_status read_maybe_gz(const char *path, uint8_t **out, size_t *len, char *err,
                                size_t errlen) {
    *out = NULL;
    *len = 0;
    gzFile f = gzopen(path, "rb");   /* reads plain files transparently */
    if (!f) return vit_errf(VIT_E_IO, err, errlen, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    uint8_t *buf = malloc(cap);
    vit_status st = VIT_OK;
    if (!buf) st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
    while (st == VIT_OK) {
        if (n == cap) {
            if (cap >= MAX_IDX_BYTES) {
                st = vit_errf(VIT_E_ARG, err, errlen, "%s: larger than %zu bytes", path,
                              MAX_IDX_BYTES);
                break;
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) { st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path); break; }
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - n;
        if (want > (1u << 30)) want = 1u << 30;
        int got = gzread(f, buf + n, (unsigned)want);
        if (got < 0) {
            int zerr;
            const char *m = gzerror(f, &zerr);
            st = vit_errf(VIT_E_IO, err, errlen, "%s: %s", path, m ? m : "read error");
            break;
        }
        if (got == 0) {
            /* a gzip stream cut short ends like EOF; zlib flags it via gzerror */
            int zerr = Z_OK;
            gzerror(f, &zerr);
            if (zerr != Z_OK && zerr != Z_STREAM_END)
                st = vit_errf(VIT_E_IO, err, errlen, "%s: truncated or corrupt gzip data", path);
            break;
        }
        n += (size_t)got;
    }
    gzclose(f);
    if (st) { free(buf); return st; }
    *out = buf;
    *len = n;
    return VIT_OK;
}

static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* IDX header: 0 0 type ndim, then ndim big-endian u32 dims; only unsigned bytes (0x08) */
static vit_status idx_parse(const char *path, const uint8_t *data, size_t len, int want_ndim_lo,
                            int want_ndim_hi, uint32_t *dims, int *ndim, size_t *off, char *err,
                            size_t errlen) {
    if (len < 4 || data[0] != 0 || data[1] != 0)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: not an IDX file (bad magic)", path);
    if (data[2] != 0x08)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: IDX element type 0x%02x, only unsigned "
                        "bytes (0x08) are supported", path, data[2]);
    int nd = data[3];
    if (nd < want_ndim_lo || nd > want_ndim_hi)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: IDX file has %d dimensions, expected %d..%d",
                        path, nd, want_ndim_lo, want_ndim_hi);
    if (len < 4 + 4 * (size_t)nd)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: truncated IDX header", path);
    uint64_t total = 1;
    for (int i = 0; i < nd; i++) {
        dims[i] = be32(data + 4 + 4 * i);
        if (i > 0 && (dims[i] == 0 || dims[i] > MAX_IDX_SIDE))
            return vit_errf(VIT_E_ARG, err, errlen, "%s: IDX dimension %d is %u", path, i, dims[i]);
        total *= dims[i];
        if (total > MAX_IDX_BYTES)
            return vit_errf(VIT_E_ARG, err, errlen, "%s: IDX header claims too much data", path);
    }
    *ndim = nd;
    *off = 4 + 4 * (size_t)nd;
    if (len - *off != total)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: IDX header claims %llu bytes of data, the "
                        "file has %zu", path, (unsigned long long)total, len - *off);
    return VIT_OK;
}

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* replace the first occurrence of a in s (in place, same length) */
static void replace_same_len(char *s, const char *a, const char *b) {
    char *p = strstr(s, a);
    if (p) memcpy(p, b, strlen(b));
}

/* labels file beside images file: t10k-images-idx3-ubyte.gz -> t10k-labels-idx1-ubyte.gz */
static int find_labels(const char *images, char *out, size_t outlen) {
    size_t n = strlen(images);
    if (n + 4 > outlen) return 0;
    memcpy(out, images, n + 1);
    char *base = strrchr(out, '/');
    base = base ? base + 1 : out;
    if (!strstr(base, "images") && !strstr(base, "idx3")) return 0;
    replace_same_len(base, "images", "labels");
    replace_same_len(base, "idx3", "idx1");
    if (file_exists(out)) return 1;
    if (n > 3 && !strcmp(out + n - 3, ".gz")) {
        out[n - 3] = 0;
        if (file_exists(out)) return 1;
    } else {
        strcat(out, ".gz");
        if (file_exists(out)) return 1;
    }
    return 0;
}

static vit_status open_idx(cli_dataset *d, const char *path, const char *labels_path,
                           int num_labels, char *err, size_t errlen) {
    size_t len;
    vit_status st = read_maybe_gz(path, &d->idx_data, &len, err, errlen);
    if (st) return st;
    uint32_t dims[4];
    int nd;
    size_t off;
    st = idx_parse(path, d->idx_data, len, 3, 4, dims, &nd, &off, err, errlen);
    if (st) return st;
    if (nd == 4 && dims[3] != 3)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: 4-D IDX images must be (n, h, w, 3), last "
                        "dimension is %u", path, dims[3]);
    if (dims[0] == 0 || dims[0] > 100000000)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: %u images", path, dims[0]);
    d->pixels = d->idx_data + off;
    d->count = (int)dims[0];
    d->idx_h = (int)dims[1];
    d->idx_w = (int)dims[2];
    d->idx_c = nd == 4 ? 3 : 1;

    char found[4096];
    if (!labels_path) {
        if (!find_labels(path, found, sizeof found))
            return vit_errf(VIT_E_ARG, err, errlen, "%s: no labels file found beside it (tried "
                            "the name with images->labels, idx3->idx1); give --labels FILE", path);
        labels_path = found;
    }
    uint8_t *lab;
    size_t llen;
    st = read_maybe_gz(labels_path, &lab, &llen, err, errlen);
    if (st) return st;
    d->idx_labels = lab;
    st = idx_parse(labels_path, lab, llen, 1, 1, dims, &nd, &off, err, errlen);
    if (st) return st;
    if ((int)dims[0] != d->count)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: %u labels for %d images in %s", labels_path,
                        dims[0], d->count, path);
    memmove(lab, lab + off, (size_t)d->count);
    int maxl = 0;
    for (int i = 0; i < d->count; i++) maxl = lab[i] > maxl ? lab[i] : maxl;
    d->num_classes = num_labels > 0 ? num_labels : maxl + 1;
    if (maxl >= d->num_classes)
        return vit_errf(VIT_E_ARG, err, errlen, "%s: label %d out of range: the model has %d "
                        "classes", labels_path, maxl, d->num_classes);
    d->class_names = calloc((size_t)d->num_classes, sizeof *d->class_names);
    d->idx_path = xstrdup(path);
    d->rgb = malloc((size_t)d->idx_h * d->idx_w * 3);
    if (!d->class_names || !d->idx_path || !d->rgb)
        return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory");
    for (int c = 0; c < d->num_classes; c++) {
        char num[16];
        snprintf(num, sizeof num, "%d", c);
        d->class_names[c] = xstrdup(num);
        if (!d->class_names[c]) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory");
    }
    return VIT_OK;
}

vit_status cli_dataset_open(const char *path, const char *labels_path, char *const *labels,
                            int num_labels, int by_order, cli_dataset **out, char *err,
                            size_t errlen) {
    *out = NULL;
    if (!path || !*path) return vit_errf(VIT_E_ARG, err, errlen, "no data path");
    struct stat st_;
    if (stat(path, &st_) != 0)
        return vit_errf(VIT_E_IO, err, errlen, "%s: %s", path, strerror(errno));
    cli_dataset *d = calloc(1, sizeof *d);
    if (!d) return vit_errf(VIT_E_NOMEM, err, errlen, "out of memory");
    vit_status st;
    if (S_ISDIR(st_.st_mode)) {
        if (labels_path) {
            cli_dataset_free(d);
            return vit_errf(VIT_E_ARG, err, errlen, "--labels is for IDX files; %s is a "
                            "directory (ImageFolder: class names come from its folders)", path);
        }
        st = open_folder(d, path, labels, labels ? num_labels : 0, by_order, err, errlen);
    } else if (S_ISREG(st_.st_mode)) {
        d->is_idx = 1;
        st = open_idx(d, path, labels_path, labels ? num_labels : 0, err, errlen);
    } else {
        st = vit_errf(VIT_E_ARG, err, errlen, "%s: neither a directory nor a file", path);
    }
    if (st == VIT_OK) {
        d->order = malloc((size_t)d->count * sizeof *d->order);
        if (!d->order) st = vit_errf(VIT_E_NOMEM, err, errlen, "out of memory");
        else
            for (int i = 0; i < d->count; i++) d->order[i] = i;
    }
    if (st) {
        cli_dataset_free(d);
        return st;
    }
    *out = d;
    return VIT_OK;
}

void cli_dataset_free(cli_dataset *d) {
    if (!d) return;
    if (d->class_names)
        for (int c = 0; c < d->num_classes; c++) free(d->class_names[c]);
    free(d->class_names);
    if (d->samples && !d->is_idx)
        for (int i = 0; i < d->n_samples; i++) free(d->samples[i].path);
    free(d->samples);
    free(d->idx_path);
    free(d->idx_data);
    free(d->idx_labels);
    free(d->order);
    free(d->rgb);
    free(d);
}

const char *cli_dataset_kind(const cli_dataset *d) { return d->is_idx ? "IDX" : "ImageFolder"; }
int cli_dataset_count(const cli_dataset *d) { return d->count; }
int cli_dataset_num_classes(const cli_dataset *d) { return d->num_classes; }
const char *cli_dataset_class_name(const cli_dataset *d, int c) {
    return c >= 0 && c < d->num_classes ? d->class_names[c] : "?";
}

int cli_dataset_label(const cli_dataset *d, int i) {
    int k = d->order[i];
    return d->is_idx ? d->idx_labels[k] : d->samples[k].label;
}

const char *cli_dataset_sample_name(const cli_dataset *d, int i, char *buf, size_t n) {
    int k = d->order[i];
    if (!d->is_idx) return d->samples[k].path;
    snprintf(buf, n, "%s#%d", d->idx_path, k);
    return buf;
}

void cli_dataset_limit(cli_dataset *d, int n) {
    if (n <= 0 || n >= d->count) return;
    /* evenly spaced over the whole list, so every class keeps its share */
    for (int i = 0; i < n; i++) d->order[i] = d->order[(int)((int64_t)i * d->count / n)];
    d->count = n;
}

vit_status cli_dataset_tensor(const cli_dataset *d, int i, const vit_preprocess *pp,
                              uint64_t max_pixels, float *out, char *err, size_t errlen) {
    if (i < 0 || i >= d->count) return vit_errf(VIT_E_ARG, err, errlen, "sample %d out of range", i);
    int k = d->order[i];
    if (d->is_idx) {
        size_t hw = (size_t)d->idx_h * d->idx_w;
        if ((uint64_t)hw > max_pixels)
            return vit_errf(VIT_E_IMAGE_TOO_LARGE, err, errlen, "%dx%d IDX image", d->idx_w,
                            d->idx_h);
        const uint8_t *src = d->pixels + (size_t)k * hw * d->idx_c;
        if (d->idx_c == 3) {
            memcpy(d->rgb, src, hw * 3);
        } else {
            for (size_t p = 0; p < hw; p++)   /* gray replicated to RGB, as the PNG decoder does */
                d->rgb[3 * p] = d->rgb[3 * p + 1] = d->rgb[3 * p + 2] = src[p];
        }
        vit_image img = {.width = d->idx_w, .height = d->idx_h, .rgb = d->rgb};
        return vit_image_to_tensor(&img, pp, out, err, errlen);
    }
    uint8_t *bytes;
    size_t len;
    vit_status st = vit_read_file(d->samples[k].path, MAX_IMAGE_FILE_BYTES, &bytes, &len, err,
                                  errlen);
    if (st) return st;
    st = vit_image_load(bytes, len, pp, max_pixels, out, err, errlen);
    free(bytes);
    return st;
}
