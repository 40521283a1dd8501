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
    cJSON_Delete(f->meta);
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

/* read n bytes at off from the file or the buffer */
static vit_status read_at(const st_file *f, void *dst, uint64_t n, uint64_t off, const char *name, char *err,
                          size_t errlen);

/* header length (the first 8 bytes), checked against the size and the cap */
static vit_status read_header_len(st_file *f, uint64_t *hlen, char *err, size_t errlen) {
    const char *path = f->path;
    if (f->file_size < 8)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: %s (%llu bytes, need at least the 8-byte header length)",
                        path, f->file_size ? "truncated" : "empty file", (unsigned long long)f->file_size);
    uint8_t lb[8];
    if (read_at(f, lb, 8, 0, "(header length)", err, errlen))
        return vit_errf(VIT_E_IO, err, errlen, "%s: cannot read header length", path);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = (h << 8) | lb[i];
    if (h > ST_MAX_HEADER)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: header length %llu exceeds the %u-byte limit (corrupt file)",
                        path, (unsigned long long)h, ST_MAX_HEADER);
    if (h > f->file_size - 8)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen,
                        "%s: header length %llu runs past the end of the %llu-byte file (truncated or corrupt)",
                        path, (unsigned long long)h, (unsigned long long)f->file_size);
    if (h < 2)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: header of %llu bytes is too short", path,
                        (unsigned long long)h);
    *hlen = h;
    return VIT_OK;
}

/* every tensor entry of the header into f->tensors, sorted by name, no duplicates or overlaps */
static vit_status parse_tensors(st_file *f, cJSON *root, char *err, size_t errlen) {
    const char *path = f->path;
    int n = 0;
    for (cJSON *e = root->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__")) n++;
    if (n > ST_MAX_TENSORS)
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: %d tensors, more than the limit of %d", path, n, ST_MAX_TENSORS);
    f->tensors = calloc((size_t)(n ? n : 1), sizeof *f->tensors);
    if (!f->tensors) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
    uint64_t data_size = f->file_size - f->data_start;
    for (cJSON *e = root->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        st_tensor *t = &f->tensors[f->n];
        t->name = strdup(e->string);
        if (!t->name) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
        f->n++;
        vit_status st = parse_entry(path, e, t, data_size, err, errlen);
        if (st) return st;
    }
    qsort(f->tensors, (size_t)f->n, sizeof *f->tensors, cmp_name);
    for (int i = 1; i < f->n; i++)
        if (!strcmp(f->tensors[i - 1].name, f->tensors[i].name))
            return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s' appears twice in the header", path,
                            f->tensors[i].name);
    /* byte ranges must not overlap */
    if (f->n < 2) return VIT_OK;
    st_tensor **by = malloc((size_t)f->n * sizeof *by);
    if (!by) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
    for (int i = 0; i < f->n; i++) by[i] = &f->tensors[i];
    qsort(by, (size_t)f->n, sizeof *by, cmp_begin);
    vit_status st = VIT_OK;
    for (int i = 1; i < f->n; i++)
        if (by[i]->begin < by[i - 1]->end) {
            st = vit_errf(VIT_E_CHECKPOINT, err, errlen,
                          "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", path, by[i - 1]->name,
                          (unsigned long long)by[i - 1]->begin, (unsigned long long)by[i - 1]->end,
                          by[i]->name, (unsigned long long)by[i]->begin, (unsigned long long)by[i]->end);
            break;
        }
    free(by);
    return st;
}

/* f has fd or mem and file_size set: read and check the header, the tensors, the metadata */
static vit_status parse_file(st_file *f, char *err, size_t errlen) {
    const char *path = f->path;
    uint64_t hlen = 0;
    vit_status st = read_header_len(f, &hlen, err, errlen);
    if (st) return st;
    f->data_start = 8 + hlen;
    char *hdr = malloc(hlen + 1);
    if (!hdr) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: cannot allocate header", path);
    if (read_at(f, hdr, hlen, 8, "(header)", err, errlen)) {
        free(hdr);
        return vit_errf(VIT_E_IO, err, errlen, "%s: short read of the header", path);
    }
    hdr[hlen] = 0;
    if (hdr[0] != '{') {
        free(hdr);
        return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: header is not a JSON object (bad JSON)", path);
    }
    cJSON *root = cJSON_ParseWithLength(hdr, hlen);
    if (!root || !cJSON_IsObject(root)) {
        const char *ep = cJSON_GetErrorPtr();
        long at = (ep && ep >= hdr && ep <= hdr + hlen) ? (long)(ep - hdr) : -1;
        st = vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: bad JSON in header (near byte %ld)", path, at);
    } else {
        st = parse_tensors(f, root, err, errlen);
        if (!st) f->meta = cJSON_DetachItemFromObjectCaseSensitive(root, "__metadata__");
    }
    cJSON_Delete(root);
    free(hdr);
    return st;
}

static st_file *st_new(const char *path) {
    st_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->fd = -1;
    if (!(f->path = strdup(path))) { free(f); return NULL; }
    return f;
}

vit_status st_open(const char *path, st_file **out, char *err, size_t errlen) {
    *out = NULL;
    st_file *f = st_new(path);
    if (!f) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", path);
    vit_status st;
    f->fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (f->fd < 0) st = vit_errf(VIT_E_IO, err, errlen, "%s: %s", path, strerror(errno));
    else if (fstat(f->fd, &sb) != 0 || !S_ISREG(sb.st_mode)) st = vit_errf(VIT_E_IO, err, errlen, "%s: not a regular file", path);
    else {
        f->file_size = (uint64_t)sb.st_size;
        st = parse_file(f, err, errlen);
    }
    if (st) { st_close(f); return st; }
    *out = f;
    return VIT_OK;
}

vit_status st_open_buffer(const char *name, const uint8_t *buf, size_t len, st_file **out, char *err,
                          size_t errlen) {
    *out = NULL;
    if (!name || (!buf && len)) return vit_errf(VIT_E_ARG, err, errlen, "st_open_buffer: bad arguments");
    st_file *f = st_new(name);
    if (!f) return vit_errf(VIT_E_NOMEM, err, errlen, "%s: out of memory", name);
    f->mem = buf ? buf : (const uint8_t *)"";
    f->file_size = len;
    vit_status st = parse_file(f, err, errlen);
    if (st) { st_close(f); return st; }
    *out = f;
    return VIT_OK;
}

const uint8_t *st_bytes(const st_file *f, const st_tensor *t) {
    return f && t && f->mem ? f->mem + f->data_start + t->begin : NULL;
}

static vit_status read_at(const st_file *f, void *dst, uint64_t n, uint64_t off, const char *name, char *err,
                          size_t errlen) {
    uint8_t *p = dst;
    if (f->mem) {   /* the bounds were checked against file_size when the header was parsed */
        if (off > f->file_size || n > f->file_size - off)
            return vit_errf(VIT_E_CHECKPOINT, err, errlen, "%s: tensor '%s': past the end of the buffer", f->path, name);
        memcpy(dst, f->mem + off, n);
        return VIT_OK;
    }
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
        vit_status st = read_at(f, dst, t->numel * 4, off, t->name, err, errlen);
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
        vit_status st = read_at(f, buf, k * 2, off + i * 2, t->name, err, errlen);
        if (st) return st;
        if (t->dtype == ST_F16)
            vit_f16_to_f32(buf, dst + i, (size_t)k);   /* util.c: the one binary16 conversion */
        else
            for (uint64_t j = 0; j < k; j++) dst[i + j] = st_bf16_to_f32(buf[j]);
        i += k;
    }
    return VIT_OK;
}
