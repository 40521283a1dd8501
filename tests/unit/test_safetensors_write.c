/* test_safetensors_write.c: the safetensors writer and atomic file replacement
 * (engine/io/safetensors_write.c): byte layout (u64 header length, 8-byte aligned JSON header,
 * data_offsets, metadata), argument checks, replacing an existing file, no temporary files
 * left behind, and a clean error for a missing directory. */
#include <cJSON.h>
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "io/safetensors_write.h"
#include "util.h"

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

int main(void) {
    char dir[] = "/tmp/vit_stw_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "tmp dir");
    char path[256], err[256] = "";
    snprintf(path, sizeof path, "%s/a.safetensors", dir);

    float w[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[3] = {0x3c00, 0x4000, 0xc000};
    stw_tensor t[2] = {
        {"w", "F32", 2, {2, 3}, w, sizeof w},
        {"h", "F16", 1, {3}, h, sizeof h},
    };
    const char *kv[] = {"format", "pt", "note", "x\"y"};
    vit_status st = vit_safetensors_write(path, t, 2, kv, 2, err, sizeof err);
    CHECK(st == VIT_OK, "write (%s)", err);

    uint8_t *buf = NULL;
    size_t len = 0;
    st = vit_read_file(path, 1 << 20, &buf, &len, err, sizeof err);
    CHECK(st == VIT_OK && len > 8, "read back %zu bytes", len);
    if (st == VIT_OK && len > 8) {
        uint64_t hl = 0;
        for (int b = 0; b < 8; b++) hl |= (uint64_t)buf[b] << (8 * b);
        CHECK(hl % 8 == 0 && 8 + hl + sizeof w + sizeof h == len,
              "header length %llu aligned, file = 8 + header + data", (unsigned long long)hl);
        cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, hl);
        const cJSON *jw = cJSON_GetObjectItemCaseSensitive(root, "w");
        const cJSON *jh = cJSON_GetObjectItemCaseSensitive(root, "h");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
        const cJSON *ow = cJSON_GetObjectItemCaseSensitive(jw, "data_offsets");
        const cJSON *oh = cJSON_GetObjectItemCaseSensitive(jh, "data_offsets");
        CHECK(ow && oh && cJSON_GetArrayItem(ow, 0)->valuedouble == 0 &&
                  cJSON_GetArrayItem(ow, 1)->valuedouble == 24 &&
                  cJSON_GetArrayItem(oh, 0)->valuedouble == 24 &&
                  cJSON_GetArrayItem(oh, 1)->valuedouble == 30,
              "data_offsets [0,24] and [24,30]");
        const cJSON *sw = cJSON_GetObjectItemCaseSensitive(jw, "shape");
        CHECK(cJSON_GetArraySize(sw) == 2 && cJSON_GetArrayItem(sw, 1)->valueint == 3 &&
                  !strcmp(cJSON_GetObjectItemCaseSensitive(jh, "dtype")->valuestring, "F16"),
              "shape and dtype");
        const cJSON *note = cJSON_GetObjectItemCaseSensitive(m, "note");
        CHECK(cJSON_IsString(note) && !strcmp(note->valuestring, "x\"y"), "metadata escaped and kept");
        CHECK(!memcmp(buf + 8 + hl, w, sizeof w) && !memcmp(buf + 8 + hl + sizeof w, h, sizeof h),
              "tensor bytes in order");
        cJSON_Delete(root);
    }
    free(buf);

    /* replacing: a second write with other content wins, no temporary file remains */
    stw_tensor one = {"only", "F32", 1, {1}, w, 4};
    st = vit_safetensors_write(path, &one, 1, NULL, 0, err, sizeof err);
    struct stat sb;
    CHECK(st == VIT_OK && stat(path, &sb) == 0 && sb.st_size > 8 && count_entries(dir) == 1,
          "rewrite replaces the file, nothing else in the directory (%d entries)", count_entries(dir));

    /* argument checks */
    stw_tensor bad = {"w", "F32", 2, {2, 2}, w, sizeof w};
    CHECK(vit_safetensors_write(path, &bad, 1, NULL, 0, err, sizeof err) == VIT_E_ARG,
          "size not matching the shape rejected: %s", err);
    stw_tensor dup[2] = {one, one};
    CHECK(vit_safetensors_write(path, dup, 2, NULL, 0, err, sizeof err) == VIT_E_ARG,
          "duplicate name rejected: %s", err);
    stw_tensor bdt = {"w", "F33", 1, {1}, w, 4};
    CHECK(vit_safetensors_write(path, &bdt, 1, NULL, 0, err, sizeof err) == VIT_E_ARG,
          "unknown dtype rejected: %s", err);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x", dir);
    CHECK(vit_safetensors_write(missing, &one, 1, NULL, 0, err, sizeof err) == VIT_E_IO,
          "missing directory is an i/o error: %s", err);
    CHECK(count_entries(dir) == 1, "failed writes leave no temporary files");

    /* atomic write of chunks */
    char p2[300];
    snprintf(p2, sizeof p2, "%s/b.txt", dir);
    stw_chunk ch[3] = {{"ab", 2}, {NULL, 0}, {"cd", 2}};
    st = vit_write_file_atomic(p2, ch, 3, 0600, err, sizeof err);
    buf = NULL;
    vit_read_file(p2, 100, &buf, &len, err, sizeof err);
    CHECK(st == VIT_OK && buf && len == 4 && !memcmp(buf, "abcd", 4) && stat(p2, &sb) == 0 &&
              (sb.st_mode & 0777) == 0600,
          "chunks concatenated, mode kept");
    free(buf);

    unlink(p2);
    unlink(path);
    rmdir(dir);
    return TEST_SUMMARY();
}
