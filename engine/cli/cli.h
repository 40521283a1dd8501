/* cli.h: the `vit` command-line tool's subcommands.  Each lives in its own cmd_*.c file and
 * is listed in main.c's table.  Contract: errors print one line on stderr and return 1..127. */
#ifndef VIT_CLI_H
#define VIT_CLI_H

#include <stdio.h>

#include "vit.h"

/* subcommands: int cmd_NAME(int argc, char **argv); argv[0] is the subcommand name */
int cmd_bench(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_knobs(int argc, char **argv);
int cmd_finetune(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_run(int argc, char **argv);

/* shared option helpers (main.c) */
/* parse a positive int option value or print "vit: --name: bad value" and return -1 */
int cli_parse_int(const char *name, const char *val, int min, int max);
/* --device auto|cpu|cuda and --precision auto|fp32|fp16|int8; print the error and return -1 on a bad value */
int cli_parse_device(const char *val, vit_device *out);
int cli_parse_precision(const char *val, vit_precision *out);
/* The options every engine subcommand shares: --model DIR, --threads N, --image-size N,
 * --device D, --precision P.  cli_engine_opt looks at argument a (v: the next one, or NULL):
 * 1 = it was one of these and took v (skip it), 0 = not one of these (or v missing: the caller
 * reports it), -1 = a bad value (already printed). */
typedef struct cli_engine_opts {
    const char *model;
    int threads, image_size;
    vit_device device;
    vit_precision precision;
} cli_engine_opts;
int cli_engine_opt(const char *a, const char *v, cli_engine_opts *o);
/* The start of an engine subcommand's option loop, at argv[*i]: the options above (cli_engine_opt;
 * *i moves past the value taken) and --help / -h (usage on stdout).  Returns CLI_ARG_NEXT when it
 * took the argument (go on to the next one), CLI_ARG_OWN when the argument is the subcommand's
 * own to parse (or unknown), else the exit status to return now: 0 after --help, 2 after a bad
 * value (already printed). */
enum { CLI_ARG_NEXT = -2, CLI_ARG_OWN = -1 };
int cli_engine_arg(int argc, char **argv, int *i, cli_engine_opts *o, void (*usage)(FILE *));
/* exit status for an engine error: 2 argument, 3 i/o, 4 unsupported image format, 5 image too
 * large, 6 corrupt image, 7 bad model (config/checkpoint), 8 device not available, 1 other */
int cli_exit_status(vit_status st);
/* Load a model directory / open a session on it.  On failure print "vit CMD: why" on stderr,
 * leave *out NULL and return the exit status (cli_exit_status); 0 on success. */
int cli_load_model(const char *cmd, const char *dir, const vit_load_opts *lo, vit_model **out);
int cli_open_session(const char *cmd, const vit_model *m, const vit_session_opts *so,
                     vit_session **out);
/* Print o (NULL: cJSON ran out of memory while it was built) as one line on stdout and delete
 * it: 0, or 1 after "vit CMD: out of memory" on stderr. */
struct cJSON;
int cli_print_json(const char *cmd, struct cJSON *o);

/* The shipped model's directory, as vitd finds it: models/fashion-vit under the working
 * directory, else beside the executable (../models/fashion-vit, ../share/vitd/models/...). */
const char *cli_default_model(void);

/* "did you mean": the candidate closest to given, or NULL when none is close (suggest.c).
 * cli_suggest_option prints "vit CMD: did you mean '--x'?" on stderr when one of the options
 * named in usage's text is close to the unknown option given. */
const char *cli_closest(const char *given, const char *const *cands, int n);
void cli_suggest_option(const char *cmd, const char *given, void (*usage)(FILE *));
/* "vit CMD: unknown or incomplete option 'GIVEN'" on stderr, the "did you mean" line when one is
 * close, then the usage text on usage_to (NULL: none); returns 2, the exit status for it. */
int cli_unknown_option(const char *cmd, const char *given, void (*usage)(FILE *), FILE *usage_to);

/* A progress line on stderr (progress.c): bar, done/total, optional extra text, rate in unit/s,
 * ETA.  mode: -1 only on a terminal, 0 never, 1 always (not a terminal: plain lines, at most
 * one a second).  update is cheap to call often; end finishes the terminal's line. */
typedef struct cli_progress {
    int on, tty, drawn;
    const char *unit;
    double t0, last;
} cli_progress;
void cli_progress_start(cli_progress *p, int mode, const char *unit);
void cli_progress_update(cli_progress *p, int done, int total, const char *extra);
void cli_progress_end(cli_progress *p);

#endif
