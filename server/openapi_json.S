/* openapi_json.S: server/openapi.json's bytes in vitd's read-only data (server/openapi_doc.c
 * serves them at GET /openapi.json); the build assembles it from the repository root. */
    .section .rodata
    .balign 16
    .globl srv_openapi_json_start
srv_openapi_json_start:
    .incbin "server/openapi.json"
    .globl srv_openapi_json_end
srv_openapi_json_end:
    .byte 0
    .section .note.GNU-stack,"",@progbits
