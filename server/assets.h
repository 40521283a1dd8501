/* assets.h: the files compiled into vitd at build time: the web page (server/ui/: index.html,
 * app.css, app.js; served by ui.c) and the OpenAPI document (server/openapi.json; served by
 * embed.c at GET /openapi.json).  server/assets/gen_assets.c writes their bytes as C into
 * the generated build/gen/assets.c (the Makefile's ASSETS list); nothing is read from disk at
 * run time.
 *
 * Threads: read-only data, any thread. */
#ifndef SRV_ASSETS_H
#define SRV_ASSETS_H
#include <stddef.h>

typedef struct srv_asset {
    const char *path;            /* URL path it is served at: "/", "/ui/<name>", "/openapi.json" */
    const char *ctype;           /* Content-Type, from the file's extension */
    const char *etag;            /* "\"<16 hex>\"" (FNV-1a 64 of the bytes) */
    const char *hash;            /* the same 16 hex digits, the ?v= of a versioned URL */
    const unsigned char *data;   /* len bytes, then a NUL not counted in len */
    size_t len;
} srv_asset;

/* Every compiled-in asset, *n of them. */
const srv_asset *srv_assets_table(int *n);

/* The asset served at path, or NULL. */
const srv_asset *srv_asset_find(const char *path);

#endif
