/* sdnotify.h: the systemd notify protocol without libsystemd: datagrams such as "READY=1" sent
 * to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or an abstract name starting with '@').
 * Harmless no-ops when the variable is unset. */
#ifndef SRV_SDNOTIFY_H
#define SRV_SDNOTIFY_H
#include <stdint.h>

/* Send state (e.g. "READY=1\nSTATUS=serving").  Returns 1 sent, 0 no socket configured, -1 error. */
int sd_notify_send(const char *state);
/* Watchdog interval from $WATCHDOG_USEC (checked against $WATCHDOG_PID when set); 0 if none. */
uint64_t sd_watchdog_usec(void);

#endif
