/* log.h: the daemon's log lines on stderr ("<UTC time> vitd <level>: <message>"), filtered by one
 * process-wide level.  Depends on nothing else in server/, so every module may log.
 *
 * Threads: srv_log is safe from any thread (one fprintf per line).  srv_log_set_level is called
 * by main before any other thread starts; later calls are atomic but may race with lines in
 * flight. */
#ifndef SRV_LOG_H
#define SRV_LOG_H

enum { SRV_LOG_ERROR = 0, SRV_LOG_WARN, SRV_LOG_INFO, SRV_LOG_DEBUG };

void srv_log_set_level(int level);
int srv_log_enabled(int level);      /* 1 when a line at this level would be written */
void srv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
