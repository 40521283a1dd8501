/* sdnotify.c: systemd notify protocol over $NOTIFY_SOCKET (see sdnotify.h). */
#include "sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sd_notify_send(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path || !state) return 0;
    size_t n = strlen(path);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (n >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@')) return -1;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@') sa.sun_path[0] = '\0';            /* abstract namespace */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/' ? 1 : 0));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    ssize_t w;
    do {
        w = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&sa, salen);
    } while (w < 0 && errno == EINTR);
    close(fd);
    return w == (ssize_t)strlen(state) ? 1 : -1;
}

uint64_t sd_watchdog_usec(void) {
    const char *u = getenv("WATCHDOG_USEC");
    if (!u || !*u) return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid()) return 0;
    char *end;
    unsigned long long v = strtoull(u, &end, 10);
    if (*end || v == 0) return 0;
    return (uint64_t)v;
}
