/* test_logfmt.c: log line formats (server/logfmt.c): text lines as before, JSON lines that parse
 * (cJSON) with every field and hostile messages escaped, over-long lines cut and still JSON;
 * W3C traceparent: the spec's example, every invalid form the spec names, and the response's
 * value keeping the trace and flags with vitd's span. */
#include "harness.h"
#include "../../server/logfmt.c"

#include <cJSON.h>

static cJSON *parse_line(const char *s) { return cJSON_Parse(s); }

int main(void) {
    char line[1024];
    logfmt_line(line, sizeof line, LOGFMT_TEXT, "2026-12-06T21:00:00.000Z", "info", "ready", NULL);
    CHECK(!strcmp(line, "2026-12-06T21:00:00.000Z vitd info: ready"), "text line: %s", line);

    logfmt_access a = {.request_id = "abc", .method = "POST", .path = "/classify", .client = "127.0.0.1",
                       .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", .span_id = "00f067aa0ba902b7",
                       .status = 200, .images = 3, .duration_ms = 12.3456, .head_version = 2};
    logfmt_line(line, sizeof line, LOGFMT_JSON, "2026-12-06T21:00:00.000Z", "info", "access", &a);
    cJSON *j = parse_line(line);
    CHECK(j && !strcmp(cJSON_GetObjectItem(j, "time")->valuestring, "2026-12-06T21:00:00.000Z") &&
          !strcmp(cJSON_GetObjectItem(j, "level")->valuestring, "info") && !strcmp(cJSON_GetObjectItem(j, "msg")->valuestring, "access") &&
          !strcmp(cJSON_GetObjectItem(j, "request_id")->valuestring, "abc") && !strcmp(cJSON_GetObjectItem(j, "method")->valuestring, "POST") &&
          !strcmp(cJSON_GetObjectItem(j, "path")->valuestring, "/classify") && cJSON_GetObjectItem(j, "status")->valueint == 200 &&
          cJSON_GetObjectItem(j, "images")->valueint == 3 && fabs(cJSON_GetObjectItem(j, "duration_ms")->valuedouble - 12.346) < 1e-9 &&
          cJSON_GetObjectItem(j, "head_version")->valueint == 2 && !strcmp(cJSON_GetObjectItem(j, "client")->valuestring, "127.0.0.1") &&
          !strcmp(cJSON_GetObjectItem(j, "trace_id")->valuestring, a.trace_id) && !cJSON_GetObjectItem(j, "note"),
          "JSON access line: every field (%s)", line);
    cJSON_Delete(j);
    a.head_version = -1;
    a.path = "/x\"\\\n\t\x01\x7f";
    logfmt_line(line, sizeof line, LOGFMT_JSON, "t", "warn", "quote \" and \x1b[31m", &a);
    j = parse_line(line);
    CHECK(j && !strcmp(cJSON_GetObjectItem(j, "path")->valuestring, "/x\"\\\n\t\x01\x7f") &&
          !strcmp(cJSON_GetObjectItem(j, "msg")->valuestring, "quote \" and \x1b[31m") && !cJSON_GetObjectItem(j, "head_version"),
          "hostile path and message escaped, round-trip exactly; unknown head version left out (%s)", line);
    cJSON_Delete(j);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    logfmt_line(line, sizeof line, LOGFMT_JSON, "t", "error", big, NULL);
    j = parse_line(line);
    CHECK(j && strlen(cJSON_GetObjectItem(j, "msg")->valuestring) == 203 && strlen(line) < sizeof line,
          "a message past the buffer: cut, still one JSON object");
    cJSON_Delete(j);
    char tiny[8];
    logfmt_line(tiny, sizeof tiny, LOGFMT_JSON, "t", "info", "m", NULL);
    CHECK(strlen(tiny) < sizeof tiny, "a buffer too small for anything: stays NUL-terminated");

    logfmt_trace t;
    CHECK(logfmt_trace_parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t) == 0 &&
          !strcmp(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736") && !strcmp(t.parent_id, "00f067aa0ba902b7") &&
          !strcmp(t.flags, "01"), "the W3C spec's example traceparent");
    char resp[56];
    logfmt_traceparent(resp, &t, "1111222233334444");
    CHECK(!strcmp(resp, "00-4bf92f3577b34da6a3ce929d0e0e4736-1111222233334444-01"), "response traceparent: same trace, our span: %s", resp);
    CHECK(logfmt_trace_parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", &t) == 0,
          "a later version with more fields: accepted");
    const char *bad[] = {
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", /* version ff */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", /* zero parent id */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", /* uppercase */
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  /* short trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", /* version 00 with more */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", /* bad flags */
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", /* separators */
        "", "00", NULL,
    };
    int rejected = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) rejected += logfmt_trace_parse(bad[i], &t) == -1;
    CHECK(rejected == (int)(sizeof bad / sizeof bad[0]), "every invalid traceparent rejected (%d of %zu)", rejected,
          sizeof bad / sizeof bad[0]);
    return TEST_SUMMARY();
}
