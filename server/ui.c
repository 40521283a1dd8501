/* ui.c: serves the compiled-in web page (see ui.h).  The page is one HTML document plus its
 * script and stylesheet as same-origin assets, so the Content-Security-Policy allows no inline
 * script or style.  index.html names them by content hash (/ui/app.js?v=HASH): a versioned URL
 * is cached as immutable; / and unversioned URLs are revalidated by ETag (304). */
#include "ui.h"

#include <string.h>

#include "assets.h"
#include "http.h"

/* The page talks only to its own origin; images are shown from blob: URLs (uploads, camera) and
 * drawn into canvases; the camera preview is a MediaStream. */
#define UI_CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; " \
               "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; form-action 'none'; " \
               "frame-ancestors 'none'"

int ui_register(srv_http *h, int on) {
    if (!on) return 0;
    if (srv_http_route(h, "/", "GET, HEAD", ui_handle, NULL) != 0) return -1;
    return srv_http_route_prefix(h, "/ui/", ui_handle, NULL);
}

/* the page's own assets: "/" and "/ui/<name>" (the table also holds /openapi.json, embed.c's) */
static const srv_asset *find_asset(const char *path) {
    if (strcmp(path, "/") != 0 && strncmp(path, "/ui/", 4) != 0) return NULL;
    return srv_asset_find(path);
}

/* If-None-Match: "*" or a comma-separated list of (possibly weak W/) entity tags */
static int etag_matches(const char *inm, const char *etag) {
    if (!inm) return 0;
    size_t el = strlen(etag);
    for (const char *p = inm; *p;) {
        while (*p == ' ' || *p == ',') p++;
        if (!strncmp(p, "W/", 2)) p += 2;
        if (*p == '*') return 1;
        if (!strncmp(p, etag, el) && (p[el] == '\0' || p[el] == ',' || p[el] == ' ')) return 1;
        const char *c = strchr(p, ',');
        if (!c) break;
        p = c;
    }
    return 0;
}

void ui_handle(srv_conn *c, void *ctx) {
    (void)ctx;
    const char *path = srv_conn_path(c), *m = srv_conn_method(c);
    const srv_asset *a = find_asset(path);
    if (!a) {
        srv_reply_error(c, 404, "not_found", "no such endpoint: %s", path);
        return;
    }
    if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
        srv_conn_set_header(c, "Allow", "GET, HEAD");
        srv_reply_error(c, 405, "method_not_allowed", "%s not allowed on %s (allowed: GET, HEAD)", m, path);
        return;
    }
    const char *v = srv_conn_query(c, "v");
    int versioned = v && !strcmp(v, a->hash);
    const char *hdrs[] = {
        "ETag", a->etag,
        "Cache-Control", versioned ? "public, max-age=31536000, immutable" : "no-cache",
        "Content-Security-Policy", UI_CSP,
        "X-Content-Type-Options", "nosniff",
        "Referrer-Policy", "no-referrer",
        "Cross-Origin-Opener-Policy", "same-origin",
        NULL,
    };
    if (etag_matches(srv_conn_header(c, "If-None-Match"), a->etag))
        srv_reply_static(c, 304, NULL, 0, NULL, hdrs);
    else
        srv_reply_static(c, 200, a->data, a->len, a->ctype, hdrs);
}
