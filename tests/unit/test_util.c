/* test_util.c: status strings, top-k, softmax and .npy round trip. */
#include <string.h>
#include <unistd.h>
#include "harness.h"
#include "util.h"

int main(void) {
    CHECK(strcmp(vit_status_str(VIT_E_IMAGE_FORMAT), "unsupported image format") == 0, "status_str");
    CHECK(strcmp(vit_status_str((vit_status)999), "unknown status") == 0, "status_str out of range");
    int all = 1;
    for (int s = 0; s < VIT_STATUS_COUNT; s++) all &= strcmp(vit_status_str((vit_status)s), "unknown status") != 0;
    CHECK(all, "every status has a string");

    float x[6] = {0.1f, 3.f, -1.f, 3.5f, 2.f, 0.f};
    int idx[6];
    int k = vit_topk(x, 6, 3, idx);
    CHECK(k == 3 && idx[0] == 3 && idx[1] == 1 && idx[2] == 4, "topk order (%d %d %d)", idx[0], idx[1], idx[2]);
    CHECK(vit_topk(x, 6, 10, idx) == 6 && idx[5] == 2, "topk k>n");

    float p[3] = {1000.f, 1000.f, 0.f};
    vit_softmax(p, 3);
    CHECK(fabsf(p[0] - 0.5f) < 1e-6f && p[2] == 0.f, "softmax stable with large inputs");

    char path[] = "/tmp/vit_npy_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    float d[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3}, got_shape[8];
    float *r;
    int nd;
    char err[256];
    CHECK(vit_npy_write(path, d, shape, 2, err, sizeof err) == VIT_OK, "npy write");
    CHECK(vit_npy_read(path, &r, got_shape, &nd, err, sizeof err) == VIT_OK && nd == 2 &&
          got_shape[0] == 2 && got_shape[1] == 3 && memcmp(r, d, sizeof d) == 0, "npy round trip");
    free(r);
    FILE *f = fopen(path, "wb");
    fwrite("\x93NUMPY\x01\x00\xff\x7f{'descr'", 1, 18, f);
    fclose(f);
    CHECK(vit_npy_read(path, &r, got_shape, &nd, err, sizeof err) == VIT_E_ARG, "npy header past end rejected: %s", err);
    unlink(path);
    return TEST_SUMMARY();
}
