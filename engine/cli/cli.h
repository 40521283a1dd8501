/* cli.h: the `vit` command-line tool's subcommands.  Each lives in its own cmd_*.c file and
 * is listed in main.c's table.  Contract: errors print one line on stderr and return 1..127. */
#ifndef VIT_CLI_H
#define VIT_CLI_H

/* subcommands: int cmd_NAME(int argc, char **argv); argv[0] is the subcommand name */
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);

/* shared option helpers (main.c) */
/* parse a positive int option value or print "vit: --name: bad value" and return -1 */
int cli_parse_int(const char *name, const char *val, int min, int max);

#endif
