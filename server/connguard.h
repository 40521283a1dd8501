/* connguard.h: deadlines on how fast a client must send, apart from the idle timeout, and the
 * connection count past which new connections are turned away.  The transport (libmicrohttpd)
 * reports each connection's phases; a watchdog thread shuts down the socket of a connection that
 * is too slow, and libmicrohttpd then closes it as it would any broken connection.
 *
 *   header block: the request line and every header must be in within header_timeout_s of the
 *     connection opening, or of the previous reply on a keep-alive connection (nginx's
 *     client_header_timeout, HAProxy's `timeout http-request`; an idle timeout that each byte
 *     resets lets a client send one header line every few seconds forever);
 *   body: after body_grace_s, the body must have arrived at min_body_rate bytes/s on average
 *     since its first byte (Apache mod_reqtimeout's MinRate): bytes >= rate x (elapsed - grace);
 *   either deadline counts only while the client owes bytes: a connection whose socket holds data
 *     the server has not read yet (FIONREAD) is not cut (the server was busy, not the client);
 *   count: a connection opened while max_connections are open is marked `over`: the transport
 *     answers its request 503 at once and closes, with a short header deadline (over_timeout_s).
 *
 * No libmicrohttpd types here: connections are file descriptors, so the unit test drives it with
 * socket pairs.  Thread safety: every function may be called from any thread; one mutex guards
 * the connection list (one lock per phase change or body chunk). */
#ifndef SRV_CONNGUARD_H
#define SRV_CONNGUARD_H
#include <stddef.h>

typedef struct cg_opts {
    int max_connections;       /* open connections past which new ones are `over`; 0: no cap */
    double header_timeout_s;   /* 0: no header deadline */
    double over_timeout_s;     /* header deadline of an `over` connection (0: header_timeout_s) */
    double body_grace_s;       /* the minimum body rate applies after this */
    double min_body_rate;      /* bytes/s; 0: no body deadline */
    double interval_s;         /* watchdog period (0: 0.1 s) */
} cg_opts;

typedef struct cg cg;
typedef struct cg_conn cg_conn;

/* Start the watchdog.  NULL on failure. */
cg *cg_new(const cg_opts *o);
/* Stop the watchdog and free (connections still open are forgotten, not shut down). */
void cg_free(cg *g);

/* A connection opened on fd; *over = 1 when it is past max_connections.  NULL: out of memory
 * (the caller closes it). */
cg_conn *cg_open(cg *g, int fd, int *over);
void cg_close(cg *g, cg_conn *c);              /* closed: c is freed */
int cg_is_over(const cg_conn *c);
void cg_headers_in(cg *g, cg_conn *c);         /* the header block is complete */
void cg_body_bytes(cg *g, cg_conn *c, size_t n); /* n more body bytes arrived */
void cg_body_in(cg *g, cg_conn *c);            /* the body is complete: no client deadline now */
void cg_reply_done(cg *g, cg_conn *c);         /* reply sent: the next header block's clock starts */

/* One watchdog pass at time now (vit_now()): shuts down every connection past a deadline and
 * counts it (metrics: header_timeout, body_timeout).  Returns how many.  The watchdog calls it;
 * tests may too. */
int cg_sweep(cg *g, double now);
int cg_open_count(cg *g);

#endif
