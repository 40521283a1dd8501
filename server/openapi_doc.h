/* openapi_doc.h: the OpenAPI 3.1 document of vitd's HTTP API (server/openapi.json, compiled
 * in by server/openapi_json.S), served at GET /openapi.json. */
#ifndef SRV_OPENAPI_DOC_H
#define SRV_OPENAPI_DOC_H
#include <stddef.h>

/* The document's bytes (static, NUL-terminated) and their length without the NUL. */
const char *srv_openapi_json(size_t *len);

#endif
