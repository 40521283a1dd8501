/* safetensors.c: strict safetensors reader (see safetensors.h).  Layout of a file:
 *   u64 little-endian N | N bytes of JSON header | data section
 * header: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...,
 *          "__metadata__": {str: str}}  with offsets relative to the data section. */
#include "io/safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static const struct { const char *name; size_t size; } dtypes[ST_DTYPE_COUNT] = {
    [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},   [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8},   [ST_I64] = {"I64", 8},   [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2},   [ST_I8] = {"I8", 1},     [ST_U8] = {"U8", 1},
    [ST_U16] = {"U16", 2},   [ST_U32] = {"U32", 4},   [ST_U64] = {"U64", 8},
    [ST_BOOL] = {"BOOL", 1}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};

const char *st_dtype_name(st_dtype d) {
    return (int)d >= 0 && d < ST_DTYPE_COUNT ? dtypes[d].name : "?";
}

size_t st_dtype_size(st_dtype d) {
    return (int)d >= 0 && d < ST_DTYPE_COUNT ? dtypes[d].size : 0;
}

const char *st_shape_str(const int64_t *shape, int ndim, char *buf, size_t n) {
    size_t k = 0;
    if (n == 0) return buf;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

float st_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->path);
    free(f);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

st_tensor *st_lookup(const st_file *f, const char *name) {
    st_tensor key = {.name = (char *)name};
    return bsearch(&key, f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_name);
}

st_tensor *st_find(st_file *f, const char *name) {
    st_tensor *t = st_lookup(f, name);
    if (t) t->used = 1;
    return t;
}

/* a JSON number that is a non-negative integer below 2^53 */
static int json_u64(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double v = j->valuedouble;
    if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v)) return 0;
    *out = (uint64_t)v;
    return 1;
}

static vit_status parse_entry(const char *path, const cJSON *e, st_tensor *t, uint64_t data_size,
                              char *err, size_t errlen) {
    const char *nm = t->name;
    if (!cJSON_IsObject(e))
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': header entry is not an object", path, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt))
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': missing or non-string dtype", path, nm);
    int d = -1;
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (!strcmp(dt->valuestring, dtypes[i].name)) d = i;
    if (d < 0)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': unknown dtype '%.32s'", path, nm,
                        dt->valuestring);
    t->dtype = (st_dtype)d;
    if (!cJSON_IsArray(sh))
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': missing or non-array shape", path, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': %d dimensions, at most %d supported",
                        path, nm, nd, ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t numel = 1;
    for (int i = 0; i < nd; i++) {
        uint64_t v;
        if (!json_u64(cJSON_GetArrayItem(sh, i), &v))
            return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                            path, nm, i);
        if (v > (1ull << 40) || (v && numel > UINT64_MAX / v) || numel * v > (1ull << 48))
            return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': shape too large", path, nm);
        t->shape[i] = (int64_t)v;
        numel *= v;
    }
    t->numel = numel;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !json_u64(cJSON_GetArrayItem(of, 0), &t->begin) ||
        !json_u64(cJSON_GetArrayItem(of, 1), &t->end))
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': data_offsets must be [begin, end] integers",
                        path, nm);
    if (t->begin > t->end || t->end > data_size)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen,
                        "%s: tensor '%s': data_offsets [%llu, %llu] outside the data section of %llu bytes "
                        "(file truncated or corrupt)", path, nm, (unsigned long long)t->begin,
                        (unsigned long long)t->end, (unsigned long long)data_size);
    uint64_t want = numel * dtypes[d].size;
    if (t->end - t->begin != want) {
        char sb[160];
        return vit_errf(VIT_E_CHECKPOINT, err, errlen,
                        "%s: tensor '%s': data_offsets span %llu bytes but %s %s needs %llu", path, nm,
                        (unsigned long long)(t->end - t->begin), dtypes[d].name,
                        st_shape_str(t->shape, nd, sb, sizeof sb), (unsigned long long)want);
    }
    return VIT_OK;
}

vit_status st_open(const char *path, st_file **out, char *err, size_t errlen) {
    *out = NULL;
    st_file *f = calloc(1, sizeof *f);
    if (!f) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) { st_close(f); return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path); }
    vit_status st = VIT_OK;
    char *hdr = NULL;
    cJSON *root = NULL;

    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (f->fd < 0) { st = vit_errf(VIT_E_IO, err, errlen, "%s: %s", path, strerror(errno)); goto fail; }
    struct stat sb;
    if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = vit_errf(VIT_E_IO, err, errlen, "%s: not a regular file", path);
        goto fail;
    }
    f->file_size = (uint64_t)sb.st_size;
    if (f->file_size < 8) {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: %s (%llu bytes, need at least the 8-byte header length)",
                      path, f->file_size ? "truncated" : "empty file", (unsigned long long)f->file_size);
        goto fail;
    }
    uint8_t lb[8];
    if (pread(f->fd, lb, 8, 0) != 8) { st = vit_errf(VIT_E_IO, err, errlen, "%s: cannot read header length", path); goto fail; }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lb[i];
    if (hlen > ST_MAX_HEADER) {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: header length %llu exceeds the %u-byte limit (corrupt file)",
                      path, (unsigned long long)hlen, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > f->file_size - 8) {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen,
                      "%s: header length %llu runs past the end of the %llu-byte file (truncated or corrupt)",
                      path, (unsigned long long)hlen, (unsigned long long)f->file_size);
        goto fail;
    }
    if (hlen < 2) {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: header of %llu bytes is too short", path,
                      (unsigned long long)hlen);
        goto fail;
    }
    f->data_start = 8 + hlen;
    hdr = malloc(hlen + 1);
    if (!hdr) { st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: cannot allocate header", path); goto fail; }
    for (uint64_t got = 0; got < hlen;) {
        ssize_t r = pread(f->fd, hdr + got, hlen - got, (off_t)(8 + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { st = vit_errf(VIT_E_IO, err, errlen, "%s: short read of the header", path); goto fail; }
        got += (uint64_t)r;
    }
    hdr[hlen] = 0;
    if (hdr[0] != '{') {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: header is not a JSON object (bad JSON)", path);
        goto fail;
    }
    root = cJSON_ParseWithLength(hdr, hlen);
    if (!root || !cJSON_IsObject(root)) {
        const char *ep = cJSON_GetErrorPtr();
        long at = (ep && ep >= hdr && ep <= hdr + hlen) ? (long)(ep - hdr) : -1;
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: bad JSON in header (near byte %ld)", path, at);
        goto fail;
    }
    int n = 0;
    for (cJSON *e = root->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__")) n++;
    if (n > ST_MAX_TENSORS) {
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: %d tensors, more than the limit of %d", path, n, ST_MAX_TENSORS);
        goto fail;
    }
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) { st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path); goto fail; }
    uint64_t data_size = f->file_size - f->data_start;
    for (cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        st_tensor *t = &f->tensors[f->n];
        t->name = strdup(e->string);
        if (!t->name) { st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path); goto fail; }
        f->n++;
        st = parse_entry(path, e, t, data_size, err, errlen);
        if (st) goto fail;
    }
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name)) {
            st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s' appears twice in the header", path,
                          f->tensors[i].name);
            goto fail;
        }
    /* byte ranges must not overlap */
    if (f->n > 1) {
        st_tensor **by = malloc((size_t)f->n * sizeof *by);
        if (!by) { st = vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path); goto fail; }
        for (int i = 0; i < f->n; i++) by[i] = &f->tensors[i];
        qsort(by, (size_t)f->n, sizeof *by, cmp_begin);
        for (int i = 1; i < f->n; i++)
            if (by[i]->begin < by[i - 1]->end) {
                st = vit_errf(VIT_E_CHECKPOINT, err, errlen,
                              "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", path, by[i - 1]->name,
                              (unsigned long long)by[i - 1]->begin, (unsigned long long)by[i - 1]->end,
                              by[i]->name, (unsigned long long)by[i]->begin, (unsigned long long)by[i]->end);
                break;
            }
        free(by);
        if (st) goto fail;
    }
    cJSON_Delete(root);
    free(hdr);
    *out = f;
    return VIT_OK;
fail:
    cJSON_Delete(root);
    free(hdr);
    st_close(f);
    return st;
}

static vit_status read_exact(const st_file *f, void *dst, uint64_t n, uint64_t off, const char *name,
                             char *err, size_t errlen) {
    uint8_t *p = dst;
    while (n) {
        ssize_t r = pread(f->fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return vit_errf(VIT_E_IO, err, errlen, "%s: tensor '%s': %s", f->path, name, strerror(errno));
        if (r == 0)
            return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': unexpected end of file (truncated)",
                            f->path, name);
        p += r;
        n -= (uint64_t)r;
        off += (uint64_t)r;
    }
    return VIT_OK;
}

vit_status st_read_f32(const st_file *f, const st_tensor *t, float *dst, char *err, size_t errlen) {
    uint64_t off = f->data_start + t->begin;
    if (t->dtype == ST_F32) {
        vit_status st = read_exact(f, dst, t->numel * 4, off, t->name, err, errlen);
        if (st) return st;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif
        return VIT_OK;
    }
    if (t->dtype != ST_F16 && t->dtype != ST_BF16)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': dtype %s not supported (F32, F16 or BF16)",
                        f->path, t->name, st_dtype_name(t->dtype));
    enum { CHUNK = 8192 };
    uint16_t buf[CHUNK];
    for (uint64_t i = 0; i < t->numel;) {
        uint64_t k = t->numel - i < CHUNK ? t->numel - i : CHUNK;
        vit_status st = read_exact(f, buf, k * 2, off + i * 2, t->name, err, errlen);
        if (st) return st;
        if (t->dtype == ST_F16)
            vit_f16_to_f32(buf, dst + i, (size_t)k);   /* util.c: the one binary16 conversion */
        else
            for (uint64_t j = 0; j < k; j++) dst[i + j] = st_bf16_to_f32(buf[j]);
        i += k;
    }
    return VIT_OK;
}
