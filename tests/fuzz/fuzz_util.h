/* fuzz_util.h: helpers shared by the fuzz harnesses (tests/fuzz/fuzz_*.c): untrusted bytes as
 * a file the engine can open by path (a memfd seen through /proc/self/fd, no disk I/O), and a
 * per-process scratch directory for harnesses that need a whole model directory.
 * Everything is created once per process and reused by every iteration (no leaks between
 * iterations); a harness must never print on its hot path. */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* A broken harness environment is not a finding: say so and stop. */
static inline void fuzz_die(const char *what) {
    perror(what);
    abort();
}

/* Write data to slot `slot` (0..3) of this process's memfds and return its path
 * ("/proc/self/fd/N"), valid until the next call for the same slot. */
static inline const char *fuzz_memfile(int slot, const uint8_t *data, size_t len) {
    static int fds[4] = {-1, -1, -1, -1};
    static char paths[4][64];
    if (slot < 0 || slot > 3) abort();
    if (fds[slot] < 0) {
        fds[slot] = memfd_create("vitd-fuzz", MFD_CLOEXEC);
        if (fds[slot] < 0) fuzz_die("memfd_create");
        snprintf(paths[slot], sizeof paths[slot], "/proc/self/fd/%d", fds[slot]);
    }
    if (ftruncate(fds[slot], 0) != 0) fuzz_die("ftruncate");
    size_t off = 0;
    while (off < len) {
        ssize_t w = pwrite(fds[slot], data + off, len - off, (off_t)off);
        if (w <= 0) fuzz_die("pwrite");
        off += (size_t)w;
    }
    return paths[slot];
}

/* This process's scratch directory (on /dev/shm when it exists), created on first use and
 * removed at exit together with the files named in fuzz_dir_files (every name a harness uses). */
static const char *const fuzz_dir_files[] = {"config.json", "model.safetensors", "preprocessor_config.json",
                                             "labels.txt", "images-idx3-ubyte", "labels-idx1-ubyte", NULL};
static char fuzz_dir_path[256];

static inline void fuzz_dir_cleanup(void) {
    char p[512];
    for (int i = 0; fuzz_dir_files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", fuzz_dir_path, fuzz_dir_files[i]);
        unlink(p);
    }
    rmdir(fuzz_dir_path);
}

static inline const char *fuzz_dir(void) {
    if (!fuzz_dir_path[0]) {
        struct stat sb;
        const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
        snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/vitd-fuzz.XXXXXX", base);
        if (!mkdtemp(fuzz_dir_path)) fuzz_die("mkdtemp");
        atexit(fuzz_dir_cleanup);
    }
    return fuzz_dir_path;
}

/* Write (or, with data NULL, remove) file `name` in the scratch directory. */
static inline void fuzz_dir_put(const char *name, const uint8_t *data, size_t len) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", fuzz_dir(), name);
    if (!data) {
        unlink(p);
        return;
    }
    FILE *f = fopen(p, "wb");
    if (!f) fuzz_die(p);
    if ((len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) fuzz_die(p);
}

/* The next piece of the input up to the separator sep (or the end): returns 1 and sets
 * piece and plen, advancing p and len past the separator; 0 when nothing is left. */
static inline int fuzz_split(const uint8_t **p, size_t *len, const char *sep, const uint8_t **piece, size_t *plen) {
    if (!*p) return 0;
    size_t sl = strlen(sep);
    const uint8_t *s = *len >= sl ? memmem(*p, *len, sep, sl) : NULL;
    *piece = *p;
    if (!s) {
        *plen = *len;
        *p = NULL;
        *len = 0;
        return 1;
    }
    *plen = (size_t)(s - *p);
    *len -= *plen + sl;
    *p = s + sl;
    return 1;
}

#endif
