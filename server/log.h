/* log.h: the daemon's log lines on stderr, filtered by one process-wide level, in one
 * process-wide format (--log-format): text ("<UTC time> vitd <level>: <message>") or one JSON
 * object a line (logfmt.h).  Depends only on logfmt.h, so every module may log.
 *
 * Threads: srv_log and srv_log_access are safe from any thread (one fprintf per line).
 * srv_log_set_level / srv_log_set_format are called by main before any other thread starts;
 * later calls are atomic but may race with lines in flight. */
#ifndef SRV_LOG_H
#define SRV_LOG_H

#include "logfmt.h"

enum { SRV_LOG_ERROR = 0, SRV_LOG_WARN, SRV_LOG_INFO, SRV_LOG_DEBUG };

void srv_log_set_level(int level);
void srv_log_set_format(int format);   /* LOGFMT_TEXT or LOGFMT_JSON */
int srv_log_enabled(int level);      /* 1 when a line at this level would be written */
void srv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One request's access line, at info: text "access <client> <method> <path> <status> images=N
 * [head_version=V ]<ms>ms id=<request id>[ trace=<trace id>][ (timeout)|(aborted)]", or JSON with
 * the fields (head_version: the head that answered, absent when none did). */
void srv_log_access(const logfmt_access *a);

#endif
