/* connguard.c: header-block and body-rate deadlines, and the connection cap (see connguard.h). */
#include "connguard.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "metrics.h"
#include "util.h"

enum { PH_HEADERS = 0, PH_BODY, PH_SERVING };

struct cg_conn {
    int fd, over, phase, killed;
    double t_phase;            /* vit_now() when the current phase began */
    size_t body;               /* body bytes so far */
    cg_conn *prev, *next;
};

struct cg {
    cg_opts o;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int stop, started, open;
    cg_conn *head;
};

static void *watchdog(void *arg) {
    cg *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        long ns = ts.tv_nsec + (long)(g->o.interval_s * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        if (g->stop) break;
        pthread_mutex_unlock(&g->mu);
        cg_sweep(g, vit_now());
        pthread_mutex_lock(&g->mu);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

cg *cg_new(const cg_opts *o) {
    cg *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->o = *o;
    if (g->o.interval_s <= 0) g->o.interval_s = 0.1;
    if (g->o.over_timeout_s <= 0) g->o.over_timeout_s = g->o.header_timeout_s;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    if (pthread_create(&g->th, NULL, watchdog, g) != 0) { cg_free(g); return NULL; }
    g->started = 1;
    return g;
}

void cg_free(cg *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stop = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    if (g->started) pthread_join(g->th, NULL);
    for (cg_conn *c = g->head, *n; c; c = n) { n = c->next; free(c); }
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

cg_conn *cg_open(cg *g, int fd, int *over) {
    cg_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->fd = fd;
    c->t_phase = vit_now();
    pthread_mutex_lock(&g->mu);
    c->over = g->o.max_connections > 0 && g->open >= g->o.max_connections;
    g->open++;
    c->next = g->head;
    if (g->head) g->head->prev = c;
    g->head = c;
    pthread_mutex_unlock(&g->mu);
    if (c->over) metrics_rejected(MET_REJ_CONN_LIMIT, 1);
    if (over) *over = c->over;
    return c;
}

void cg_close(cg *g, cg_conn *c) {
    if (!c) return;
    pthread_mutex_lock(&g->mu);
    if (c->prev) c->prev->next = c->next; else g->head = c->next;
    if (c->next) c->next->prev = c->prev;
    g->open--;
    pthread_mutex_unlock(&g->mu);
    free(c);
}

int cg_is_over(const cg_conn *c) { return c && c->over; }

static void set_phase(cg *g, cg_conn *c, int ph) {
    if (!c) return;
    double now = vit_now();
    pthread_mutex_lock(&g->mu);
    c->phase = ph;
    c->t_phase = now;
    c->body = 0;
    pthread_mutex_unlock(&g->mu);
}

void cg_headers_in(cg *g, cg_conn *c) { set_phase(g, c, PH_BODY); }
void cg_body_in(cg *g, cg_conn *c) { set_phase(g, c, PH_SERVING); }
void cg_reply_done(cg *g, cg_conn *c) { set_phase(g, c, PH_HEADERS); }

void cg_body_bytes(cg *g, cg_conn *c, size_t n) {
    if (!c) return;
    pthread_mutex_lock(&g->mu);
    c->body += n;
    pthread_mutex_unlock(&g->mu);
}

/* the reason a connection is past its deadline at now, or -1 */
static int overdue(const cg *g, const cg_conn *c, double now) {
    double t = now - c->t_phase;
    if (c->phase == PH_HEADERS) {
        double lim = c->over ? g->o.over_timeout_s : g->o.header_timeout_s;
        return lim > 0 && t > lim ? MET_REJ_HEADER_TIMEOUT : -1;
    }
    if (c->phase == PH_BODY && g->o.min_body_rate > 0 && t > g->o.body_grace_s &&
        (double)c->body < g->o.min_body_rate * (t - g->o.body_grace_s))
        return MET_REJ_BODY_TIMEOUT;
    return -1;
}

int cg_sweep(cg *g, double now) {
    int k = 0, hdr = 0, body = 0;
    pthread_mutex_lock(&g->mu);
    for (cg_conn *c = g->head; c; c = c->next) {
        if (c->killed) continue;
        int why = overdue(g, c, now);
        if (why < 0) continue;
        int unread = 0;                 /* bytes the client sent that the server has not read yet: */
        if (ioctl(c->fd, FIONREAD, &unread) == 0 && unread > 0) continue;   /* we are slow, not it */
        shutdown(c->fd, SHUT_RDWR);   /* the transport sees the end and closes it */
        c->killed = 1;
        k++;
        if (why == MET_REJ_HEADER_TIMEOUT) hdr++; else body++;
    }
    pthread_mutex_unlock(&g->mu);
    if (hdr) metrics_rejected(MET_REJ_HEADER_TIMEOUT, (uint64_t)hdr);
    if (body) metrics_rejected(MET_REJ_BODY_TIMEOUT, (uint64_t)body);
    return k;
}

int cg_open_count(cg *g) {
    pthread_mutex_lock(&g->mu);
    int n = g->open;
    pthread_mutex_unlock(&g->mu);
    return n;
}
