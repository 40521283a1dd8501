/* safetensors_write.c: crash-safe file replacement and the safetensors writer
 * (see safetensors_write.h).  Format: u64 little-endian header length, a JSON header
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}} padded
 * with spaces to a multiple of 8 bytes, then the tensors' bytes back to back. */
#include "io/safetensors_write.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static atomic_uint tmp_counter;

static int write_all(int fd, const void *data, size_t len) {
    const uint8_t *p = data;
    while (len) {
        ssize_t w = write(fd, p, len > (1u << 30) ? (1u << 30) : len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

vit_status vit_write_file_atomic(const char *path, const stw_chunk *chunks, int n, unsigned mode,
                                 char *err, size_t errlen) {
    if (!path || !*path || (n > 0 && !chunks) || n < 0)
        return vit_errf(VIT_E_ARG, err, errlen, "write: bad arguments");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 64), *dircopy = strdup(path);
    if (!tmp || !dircopy) {
        free(tmp);
        free(dircopy);
        return vit_errf(VIT_E_NOMEM, err, errlen, "write %s: out of memory", path);
    }
    snprintf(tmp, plen + 64, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&tmp_counter, 1));
    vit_status st = VIT_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode_t)mode);
    if (fd < 0) {
        st = vit_errf(VIT_E_IO, err, errlen, "create %s: %s", tmp, strerror(errno));
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (chunks[i].len && write_all(fd, chunks[i].data, chunks[i].len) != 0) {
            st = vit_errf(VIT_E_IO, err, errlen, "write %s: %s", tmp, strerror(errno));
            break;
        }
    }
    if (st == VIT_OK && fsync(fd) != 0)
        st = vit_errf(VIT_E_IO, err, errlen, "fsync %s: %s", tmp, strerror(errno));
    if (close(fd) != 0 && st == VIT_OK)
        st = vit_errf(VIT_E_IO, err, errlen, "close %s: %s", tmp, strerror(errno));
    if (st == VIT_OK && rename(tmp, path) != 0)
        st = vit_errf(VIT_E_IO, err, errlen, "rename %s -> %s: %s", tmp, path, strerror(errno));
    if (st != VIT_OK) {
        unlink(tmp);
        goto out;
    }
    /* make the rename itself durable */
    int dfd = open(dirname(dircopy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL)
            st = vit_errf(VIT_E_IO, err, errlen, "fsync directory of %s: %s", path, strerror(errno));
        close(dfd);
    }
out:
    free(tmp);
    free(dircopy);
    return st;
}

static size_t dtype_size(const char *d) {
    if (!strcmp(d, "F32") || !strcmp(d, "I32") || !strcmp(d, "U32")) return 4;
    if (!strcmp(d, "F16") || !strcmp(d, "BF16") || !strcmp(d, "I16") || !strcmp(d, "U16")) return 2;
    if (!strcmp(d, "F64") || !strcmp(d, "I64") || !strcmp(d, "U64")) return 8;
    if (!strcmp(d, "I8") || !strcmp(d, "U8") || !strcmp(d, "BOOL") || !strcmp(d, "F8_E4M3") ||
        !strcmp(d, "F8_E5M2"))
        return 1;
    return 0;
}

vit_status vit_safetensors_write(const char *path, const stw_tensor *t, int n,
                                 const char *const *meta_kv, int n_meta, char *err, size_t errlen) {
    if (n < 0 || (n > 0 && !t) || n_meta < 0 || (n_meta > 0 && !meta_kv))
        return vit_errf(VIT_E_ARG, err, errlen, "safetensors write: bad arguments");
    cJSON *root = cJSON_CreateObject();
    stw_chunk *chunks = malloc(sizeof(stw_chunk) * (size_t)(n + 2));
    char *json = NULL, *head = NULL;
    vit_status st = VIT_OK;
    if (!root || !chunks) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "safetensors write: out of memory");
        goto out;
    }
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < n_meta && m; i++)
            if (!meta_kv[2 * i] || !meta_kv[2 * i + 1] ||
                !cJSON_AddStringToObject(m, meta_kv[2 * i], meta_kv[2 * i + 1])) {
                st = vit_errf(VIT_E_ARG, err, errlen, "safetensors write: bad metadata entry %d", i);
                goto out;
            }
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t es = t[i].dtype ? dtype_size(t[i].dtype) : 0;
        if (!t[i].name || !*t[i].name || !strcmp(t[i].name, "__metadata__") || !es ||
            t[i].ndim < 0 || t[i].ndim > 8 || (t[i].nbytes && !t[i].data) ||
            cJSON_GetObjectItemCaseSensitive(root, t[i].name)) {
            st = vit_errf(VIT_E_ARG, err, errlen, "safetensors write: bad tensor %d (%s)", i,
                          t[i].name ? t[i].name : "NULL");
            goto out;
        }
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0) numel = UINT64_MAX;
            else numel *= (uint64_t)t[i].shape[d];
        }
        if (numel == UINT64_MAX || numel * es != t[i].nbytes) {
            st = vit_errf(VIT_E_ARG, err, errlen,
                          "safetensors write: %s: %zu bytes do not match its shape and dtype %s",
                          t[i].name, t[i].nbytes, t[i].dtype);
            goto out;
        }
        cJSON *o = cJSON_AddObjectToObject(root, t[i].name);
        cJSON *sh = o ? cJSON_AddArrayToObject(o, "shape") : NULL;
        cJSON *of = o ? cJSON_AddArrayToObject(o, "data_offsets") : NULL;
        if (!o || !sh || !of || !cJSON_AddStringToObject(o, "dtype", t[i].dtype)) {
            st = vit_errf(VIT_E_NOMEM, err, errlen, "safetensors write: out of memory");
            goto out;
        }
        for (int d = 0; d < t[i].ndim; d++)
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t[i].shape[d]));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(of, cJSON_CreateNumber((double)(off + t[i].nbytes)));
        off += t[i].nbytes;
        chunks[i + 2] = (stw_chunk){ t[i].data, t[i].nbytes };
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "safetensors write: out of memory");
        goto out;
    }
    size_t jl = strlen(json), hl = (jl + 7) & ~(size_t)7;
    head = malloc(8 + hl);
    if (!head) {
        st = vit_errf(VIT_E_NOMEM, err, errlen, "safetensors write: out of memory");
        goto out;
    }
    for (int b = 0; b < 8; b++) head[b] = (char)(((uint64_t)hl >> (8 * b)) & 0xff);
    memcpy(head + 8, json, jl);
    memset(head + 8 + jl, ' ', hl - jl);
    chunks[0] = (stw_chunk){ head, 8 + hl };
    chunks[1] = (stw_chunk){ NULL, 0 };
    st = vit_write_file_atomic(path, chunks, n + 2, 0644, err, errlen);
out:
    cJSON_Delete(root);
    free(chunks);
    free(json);
    free(head);
    return st;
}
