/* replay_main.c: runs a libFuzzer harness (tests/fuzz/fuzz_*.c) without libFuzzer, so that
 * `make test` replays the committed corpora with gcc in the normal and the ASan+UBSan builds.
 *   replay_<target> NAME DIR|FILE...
 * Calls LLVMFuzzerTestOneInput once per file (a directory: each regular file in it, sorted by
 * name) with the file's bytes in an allocation of exactly their size.  A crash, sanitizer report
 * or leak ends the process with a non-zero status (the caller prints the FAIL line); otherwise
 * it prints one "PASS NAME: DIR (N inputs)" line per argument, and "FAIL" for an argument that
 * cannot be read. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int verbose;   /* VITD_FUZZ_VERBOSE=1: name each file before running it (to find a crasher) */

static int run_file(const char *path) {
    if (verbose) fprintf(stderr, "replay %s\n", path);
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf) { fclose(f); return -1; }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        uint8_t *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    int bad = ferror(f);
    fclose(f);
    /* exactly n bytes, so a read past the input is an ASan report */
    uint8_t *exact = malloc(n ? n : 1);
    if (bad || !exact) { free(buf); free(exact); return -1; }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s NAME DIR|FILE...\n", argv[0]);
        return 2;
    }
    verbose = getenv("VITD_FUZZ_VERBOSE") && atoi(getenv("VITD_FUZZ_VERBOSE"));
    int failed = 0;
    for (int a = 2; a < argc; a++) {
        struct stat sb;
        int n = 0, err = 0;
        if (stat(argv[a], &sb) != 0) {
            err = 1;
        } else if (S_ISDIR(sb.st_mode)) {
            DIR *d = opendir(argv[a]);
            char **names = NULL;
            int cnt = 0, cap = 0;
            struct dirent *e;
            while (d && (e = readdir(d))) {
                if (e->d_name[0] == '.') continue;
                if (cnt == cap) {
                    cap = cap ? 2 * cap : 64;
                    char **nn = realloc(names, sizeof *names * (size_t)cap);
                    if (!nn) abort();
                    names = nn;
                }
                if (!(names[cnt++] = strdup(e->d_name))) abort();
            }
            if (d) closedir(d);
            else err = 1;
            if (cnt) qsort(names, (size_t)cnt, sizeof *names, cmp_str);
            for (int i = 0; i < cnt; i++) {
                char p[4096];
                snprintf(p, sizeof p, "%s/%s", argv[a], names[i]);
                if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
                    if (run_file(p) != 0) err = 1;
                    else n++;
                }
                free(names[i]);
            }
            free(names);
        } else {
            if (run_file(argv[a]) != 0) err = 1;
            else n = 1;
        }
        if (err) {
            printf("FAIL %s: %s: cannot read\n", argv[1], argv[a]);
            failed++;
        } else {
            printf("PASS %s: %s (%d inputs)\n", argv[1], argv[a], n);
        }
        fflush(stdout);
    }
    return failed ? 1 : 0;
}
