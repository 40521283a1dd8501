/* test_connguard.c: server/connguard.c on socket pairs, with the sweep driven at chosen times
 * (no sleeping, no timing thresholds): the header-block deadline, the body's minimum average
 * rate after its grace, no deadline while serving, the clock restarting for the next request on
 * a keep-alive connection, the connection cap (`over`, with its shorter header deadline), and
 * the metrics by reason.  A shut-down connection reads EOF at the client's end. */
#include "harness.h"
#include "../../server/connguard.c"
#include "../../server/metrics.c"

#include <errno.h>
#include <unistd.h>

/* the client's end saw the server's shutdown (EOF) */
static int client_sees_eof(int fd) {
    char ch;
    ssize_t n = recv(fd, &ch, 1, MSG_DONTWAIT);
    return n == 0;
}

int main(void) {
    metrics_init();
    cg_opts o = {.max_connections = 3, .header_timeout_s = 10, .over_timeout_s = 1, .body_grace_s = 5,
                 .min_body_rate = 1000, .interval_s = 3600};   /* the watchdog stays out of the way */
    cg *g = cg_new(&o);
    CHECK(g != NULL, "cg_new");
    if (!g) return TEST_SUMMARY();
    int sv[4][2];
    cg_conn *c[4];
    int over[4];
    for (int i = 0; i < 4; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv[i])) { CHECK(0, "socketpair: %s", strerror(errno)); return TEST_SUMMARY(); }
        c[i] = cg_open(g, sv[i][0], &over[i]);
    }
    CHECK(!over[0] && !over[1] && !over[2] && over[3] && cg_is_over(c[3]) && cg_open_count(g) == 4,
          "max_connections 3: the 4th connection is over");
    double t0 = vit_now();
    /* c0 waits for headers; c1 sends a body slowly; c2 is being served */
    cg_headers_in(g, c[1]);
    cg_headers_in(g, c[2]);
    cg_body_bytes(g, c[2], 100);
    cg_body_in(g, c[2]);
    int k = cg_sweep(g, t0 + 0.5);
    CHECK(k == 0, "nothing overdue at +0.5 s (%d)", k);
    k = cg_sweep(g, t0 + 2);
    CHECK(k == 1 && client_sees_eof(sv[3][1]) && !client_sees_eof(sv[0][1]),
          "+2 s: the over connection's 1 s header deadline passed, shut down (%d)", k);
    cg_body_bytes(g, c[1], 4000);               /* 4000 bytes: rate 1000/s is met until grace + 4 s */
    k = cg_sweep(g, t0 + 8.5);
    CHECK(k == 0, "+8.5 s: header deadline (10 s) not passed, body at 4000 >= 1000 x (8.5 - 5)");
    k = cg_sweep(g, t0 + 9.5);
    CHECK(k == 1 && client_sees_eof(sv[1][1]), "+9.5 s: body below 1000 B/s after the grace, shut down (%d)", k);
    k = cg_sweep(g, t0 + 10.5);
    CHECK(k == 1 && client_sees_eof(sv[0][1]), "+10.5 s: the header block not in after 10 s, shut down");
    k = cg_sweep(g, t0 + 1000);
    CHECK(k == 0 && !client_sees_eof(sv[2][1]), "a connection being served has no client deadline (+1000 s)");
    /* data the server has not read yet: the client is not the slow one */
    cg_reply_done(g, c[2]);
    double t1 = vit_now();
    ssize_t w = send(sv[2][1], "GET / HTTP/1.1\r\n", 16, 0);
    CHECK(w == 16 && cg_sweep(g, t1 + 11) == 0, "past the header deadline, but bytes wait unread: not cut");
    char sink[32];
    ssize_t r = recv(sv[2][0], sink, sizeof sink, 0);
    (void)r;
    CHECK(cg_sweep(g, t1 + 9) == 0 && cg_sweep(g, t1 + 11) == 1 && client_sees_eof(sv[2][1]),
          "after the reply, the next header block has its own 10 s");
    CHECK(cg_sweep(g, t1 + 2000) == 0, "a shut-down connection is counted once");
    char *txt = metrics_render(NULL);
    CHECK(txt && strstr(txt, "vitd_rejected_total{reason=\"header_timeout\"} 3\n") &&
          strstr(txt, "vitd_rejected_total{reason=\"body_timeout\"} 1\n") &&
          strstr(txt, "vitd_rejected_total{reason=\"connection_limit\"} 1\n"),
          "metrics: header_timeout 3, body_timeout 1, connection_limit 1");
    free(txt);
    for (int i = 0; i < 4; i++) { cg_close(g, c[i]); close(sv[i][0]); close(sv[i][1]); }
    CHECK(cg_open_count(g) == 0, "every connection closed");
    int sv5[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv5);
    int ov = -1;
    cg_conn *c5 = cg_open(g, sv5[0], &ov);
    CHECK(ov == 0, "below the cap again: not over");
    cg_close(g, c5);
    close(sv5[0]); close(sv5[1]);
    cg_free(g);
    return TEST_SUMMARY();
}
