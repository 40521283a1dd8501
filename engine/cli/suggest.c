/* suggest.c: "did you mean ...?" for `vit`: the closest valid subcommand or option to a
 * mistyped one, by edit distance (insertions, deletions, substitutions and swaps of two
 * neighbours each cost 1).  A subcommand's options are read from its own usage text, so the
 * list can never disagree with the help; cli_unknown_option reports the unknown option with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define SUGGEST_MAX_LEN 64

/* optimal string alignment distance; strings longer than SUGGEST_MAX_LEN are "far" */
static int edit_distance(const char *a, const char *b) {
    size_t n = strlen(a), m = strlen(b);
    if (n > SUGGEST_MAX_LEN || m > SUGGEST_MAX_LEN) return 1 << 20;
    int d[SUGGEST_MAX_LEN + 1][SUGGEST_MAX_LEN + 1];
    for (size_t i = 0; i <= n; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= m; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            int c = a[i - 1] != b[j - 1];
            int v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + c < v) v = d[i - 1][j - 1] + c;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[n][m];
}

const char *cli_closest(const char *given, const char *const *cands, int n) {
    const char *best = NULL;
    int bd = 1 << 20;
    for (int i = 0; i < n; i++) {
        int dd = edit_distance(given, cands[i]);
        if (dd < bd) { bd = dd; best = cands[i]; }
    }
    size_t len = strlen(given);
    /* close enough: at most 2 edits, and fewer than a third of the word (prefixes count too) */
    if (best && bd > 0 && bd <= 2 && (size_t)bd * 3 <= len + 1) return best;
    /* else the only candidate that starts with what was typed (3 characters at least) */
    const char *prefixed = NULL;
    for (int i = 0; len >= 3 && i < n; i++)
        if (!strncmp(cands[i], given, len) && strlen(cands[i]) > len) {
            if (prefixed) return NULL;
            prefixed = cands[i];
        }
    return prefixed;
}

void cli_suggest_option(const char *cmd, const char *given, void (*usage)(FILE *)) {
    if (!given || strncmp(given, "--", 2) != 0) return;
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return;
    usage(f);
    if (fclose(f) != 0 || !text) { free(text); return; }
    enum { MAX_OPTS = 64 };
    char opts[MAX_OPTS][SUGGEST_MAX_LEN + 1];
    const char *cands[MAX_OPTS];
    int n = 0;
    for (const char *p = text; (p = strstr(p, "--")) && n < MAX_OPTS;) {
        size_t k = 2;
        while ((p[k] >= 'a' && p[k] <= 'z') || (p[k] >= '0' && p[k] <= '9') || p[k] == '-') k++;
        if (k > 2 && k <= SUGGEST_MAX_LEN) {
            int dup = 0;
            for (int i = 0; i < n && !dup; i++) dup = strlen(opts[i]) == k && !strncmp(opts[i], p, k);
            if (!dup) {
                memcpy(opts[n], p, k);
                opts[n][k] = '\0';
                cands[n] = opts[n];
                n++;
            }
        }
        p += k;
    }
    /* "--name=value" is compared by its name */
    char name[SUGGEST_MAX_LEN + 1];
    snprintf(name, sizeof name, "%.*s", (int)strcspn(given, "="), given);
    const char *best = cli_closest(name, cands, n);
    if (best) fprintf(stderr, "vit %s: did you mean '%s'?\n", cmd, best);
    free(text);
}

int cli_unknown_option(const char *cmd, const char *given, void (*usage)(FILE *), FILE *usage_to) {
    fprintf(stderr, "vit %s: unknown or incomplete option '%s'\n", cmd, given);
    cli_suggest_option(cmd, given, usage);
    if (usage_to) usage(usage_to);
    return 2;
}
