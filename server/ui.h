/* ui.h: the web page vitd serves at GET / (issue 18): try images against /classify, see the
 * attention map over them, read the model card, teach labels through the admin API.  Its files
 * (server/ui/index.html, app.css, app.js) are compiled into the binary at build time
 * (assets.h: "/" and "/ui/<name>" in the asset table); nothing is read from disk or fetched at
 * run time.
 *
 * Threads: ui_handle runs on libmicrohttpd threads and only reads the fixed asset table;
 * ui_register runs once from main (the composition root) before serving. */
#ifndef SRV_UI_H
#define SRV_UI_H

typedef struct srv_conn srv_conn;
typedef struct srv_http srv_http;

/* on = 0: the page is off (--ui off): nothing is registered, so / and /ui/... answer 404 like
 * any unknown path.  on = 1: registers GET/HEAD / and the /ui/ prefix (the page's scripts and
 * styles) on h.  0 or -1. */
int ui_register(srv_http *h, int on);

/* The handler for GET/HEAD / and /ui/...: the asset with Content-Type, Content-Security-Policy,
 * ETag and Cache-Control (304 on a matching If-None-Match); 404 unknown, 405 other methods. */
void ui_handle(srv_conn *c, void *ctx);

#endif
