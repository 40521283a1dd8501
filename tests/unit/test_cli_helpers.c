/* test_cli_helpers.c: the `vit` tool's "did you mean" and unknown-option report
 * (engine/cli/suggest.c) and progress line (engine/cli/progress.c): which candidates count as
 * close, options read from a usage text, what an unknown option prints, and what the progress
 * line prints when it is asked for outside a terminal. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "../../engine/cli/progress.c"
#include "../../engine/cli/suggest.c"

static void demo_usage(FILE *f) {
    fprintf(f, "usage: vit demo --model DIR [--top-k K] [--batch-size N]\n  --epochs N   (30)\n  --json\n");
}

/* run fn with stderr sent to a file; returns what it wrote (static buffer) */
static const char *capture_stderr(void (*fn)(void *), void *arg) {
    static char buf[8192];
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof buf - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    return buf;
}

static void suggest_epoch(void *a) { (void)a; cli_suggest_option("demo", "--epoch", demo_usage); }
static void suggest_far(void *a) { (void)a; cli_suggest_option("demo", "--zzzzzz", demo_usage); }
static void suggest_eq(void *a) { (void)a; cli_suggest_option("demo", "--top-kk=3", demo_usage); }
static void suggest_exact(void *a) { (void)a; cli_suggest_option("demo", "--json", demo_usage); }
static int unknown_rc;
static void unknown_usage(void *a) { unknown_rc = cli_unknown_option("demo", a, demo_usage, stderr); }
static void unknown_quiet(void *a) { unknown_rc = cli_unknown_option("demo", a, demo_usage, NULL); }

static void progress_forced(void *a) {
    (void)a;
    cli_progress p;
    cli_progress_start(&p, 1, "images");
    for (int i = 1; i <= 50; i++) cli_progress_update(&p, i, 50, NULL);   /* throttled: first and last */
    cli_progress_end(&p);
}
static void progress_off(void *a) {
    (void)a;
    cli_progress p;
    cli_progress_start(&p, 0, "images");
    cli_progress_update(&p, 5, 10, "loss 1");
    cli_progress_end(&p);
}

int main(void) {
    const char *cmds[] = {"bench", "check", "classify", "eval", "finetune", "info", "preprocess", "run", "version"};
    const int n = (int)(sizeof cmds / sizeof cmds[0]);
    const char *r;
    CHECK((r = cli_closest("clasify", cmds, n)) && !strcmp(r, "classify"), "clasify -> classify");
    CHECK((r = cli_closest("fientune", cmds, n)) && !strcmp(r, "finetune"), "fientune (swap) -> finetune");
    CHECK((r = cli_closest("evl", cmds, n)) && !strcmp(r, "eval"), "evl -> eval");
    CHECK((r = cli_closest("chek", cmds, n)) && !strcmp(r, "check"), "chek -> check");
    CHECK((r = cli_closest("pre", cmds, n)) && !strcmp(r, "preprocess"), "pre (a prefix) -> preprocess");
    CHECK(cli_closest("xyzzy", cmds, n) == NULL, "xyzzy: nothing close");
    const char *two[] = {"--batch", "--batch-size"};
    CHECK((r = cli_closest("--bat", two, 2)) && !strcmp(r, "--batch"), "--bat -> --batch (2 edits)");
    const char *pre[] = {"--threads-per-core", "--threads-per-node"};
    CHECK(cli_closest("--threads-per", pre, 2) == NULL, "a prefix of two: nothing");
    CHECK(cli_closest("classify", cmds, n) == NULL, "an exact name is no suggestion");
    CHECK(cli_closest("", cmds, n) == NULL, "empty: nothing");
    char longname[200];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    CHECK(cli_closest(longname, cmds, n) == NULL, "a 199-character name: nothing (bounded)");

    CHECK(strstr(capture_stderr(suggest_epoch, NULL), "vit demo: did you mean '--epochs'?") != NULL, "--epoch -> --epochs from the usage text");
    CHECK(capture_stderr(suggest_far, NULL)[0] == '\0', "--zzzzzz: silent");
    CHECK(strstr(capture_stderr(suggest_eq, NULL), "'--top-k'") != NULL, "--top-kk=3 compared by its name");
    CHECK(capture_stderr(suggest_exact, NULL)[0] == '\0', "a valid option: silent");
    CHECK(!strcmp(capture_stderr(unknown_usage, "--jsn"), "vit demo: unknown or incomplete option '--jsn'\n"
                  "vit demo: did you mean '--json'?\nusage: vit demo --model DIR [--top-k K] [--batch-size N]\n"
                  "  --epochs N   (30)\n  --json\n") && unknown_rc == 2,
          "unknown option: the line, the suggestion, the usage; exit status 2");
    CHECK(!strcmp(capture_stderr(unknown_quiet, "-x"), "vit demo: unknown or incomplete option '-x'\n") && unknown_rc == 2,
          "unknown option without usage: the line alone (no suggestion for a short option)");

    const char *out = capture_stderr(progress_forced, NULL);
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    CHECK(strstr(out, "50/50") && strstr(out, "images/s") && strstr(out, "ETA ") && !strchr(out, '\r'),
          "forced progress outside a terminal: plain lines with rate and ETA, no \\r");
    CHECK(lines >= 1 && lines <= 3, "forced progress outside a terminal: throttled (%d lines for 50 updates)", lines);
    CHECK(capture_stderr(progress_off, NULL)[0] == '\0', "progress off: silent");
    return TEST_SUMMARY();
}
