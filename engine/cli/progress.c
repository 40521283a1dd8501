/* progress.c: the progress line of long `vit` subcommands (eval, finetune) on stderr: a bar,
 * done/total, the rate and the ETA.  On a terminal it redraws one line (at most 10 times a
 * second); elsewhere it stays quiet unless asked (--progress), and then prints a plain line
 * at most once a second. */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "cli.h"
#include "util.h"

void cli_progress_start(cli_progress *p, int mode, const char *unit) {
    p->tty = isatty(2);
    p->on = mode > 0 || (mode < 0 && p->tty);
    p->unit = unit;
    p->t0 = vit_now();
    p->last = -1;
    p->drawn = 0;
}

void cli_progress_update(cli_progress *p, int done, int total, const char *extra) {
    if (!p->on) return;
    double now = vit_now(), elapsed = now - p->t0;
    if (done < total && p->last >= 0 && now - p->last < (p->tty ? 0.1 : 1.0)) return;
    p->last = now;
    const int width = 30;
    int fill = total > 0 ? (int)((int64_t)done * width / total) : width;
    double rate = elapsed > 0 ? done / elapsed : 0;
    double eta = rate > 0 ? (total - done) / rate : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = 0;
    fprintf(stderr, "%s[%s] %d/%d%s%s  %.1f %s/s  ETA %dm%02ds %s", p->tty ? "\r" : "", bar, done, total,
            extra ? "  " : "", extra ? extra : "", rate, p->unit, (int)eta / 60, (int)eta % 60, p->tty ? "" : "\n");
    fflush(stderr);
    p->drawn = 1;
}

void cli_progress_end(cli_progress *p) {
    if (p->on && p->tty && p->drawn) fprintf(stderr, "\n");
    p->drawn = 0;
}
