/* openapi_doc.c: access to the compiled-in OpenAPI document (openapi_doc.h). */
#include "openapi_doc.h"

extern const char srv_openapi_json_start[], srv_openapi_json_end[];

const char *srv_openapi_json(size_t *len) {
    if (len) *len = (size_t)(srv_openapi_json_end - srv_openapi_json_start);
    return srv_openapi_json_start;
}
