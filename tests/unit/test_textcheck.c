/* test_textcheck.c: server/textcheck.c: UTF-8 acceptance against Python's strict decoder on the
 * classic malformed cases (overlong, surrogate, past U+10FFFF, truncated, stray continuation),
 * control characters (NUL, C0, DEL, C1) refused, and log escaping (no raw control byte,
 * quote or backslash survives; truncation marked; never past the buffer). */
#include "harness.h"
#include "../../server/textcheck.c"

int main(void) {
    struct { const char *s; size_t n; int ok; const char *what; } u[] = {
        {"Ankle boot", 10, 1, "ASCII"},
        {"T-shirt/top", 11, 1, "ASCII punctuation"},
        {"\xC3\xA9t\xC3\xA9", 5, 1, "two-byte (ete)"},
        {"\xE7\x8C\xAB", 3, 1, "three-byte (cat, CJK)"},
        {"\xF0\x9F\x90\x88", 4, 1, "four-byte (emoji)"},
        {"\xF4\x8F\xBF\xBF", 4, 1, "U+10FFFF"},
        {"a\0b", 3, 0, "NUL inside"},
        {"a\nb", 3, 0, "newline"},
        {"\x1B[31m", 5, 0, "terminal escape"},
        {"a\x7F", 2, 0, "DEL"},
        {"\xC2\x85", 2, 0, "C1 control (NEL)"},
        {"\xC0\xAF", 2, 0, "overlong '/'"},
        {"\xE0\x80\xAF", 3, 0, "overlong three-byte"},
        {"\xED\xA0\x80", 3, 0, "surrogate U+D800"},
        {"\xF4\x90\x80\x80", 4, 0, "past U+10FFFF"},
        {"\xE7\x8C", 2, 0, "truncated sequence"},
        {"\x80", 1, 0, "stray continuation byte"},
        {"\xFF", 1, 0, "0xFF"},
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        char why[80] = "";
        int ok = txt_utf8_clean(u[i].s, u[i].n, why, sizeof why);
        CHECK(ok == u[i].ok && (ok || why[0]), "utf8: %s -> %s%s%s", u[i].what, ok ? "accepted" : "refused",
              ok ? "" : ": ", why);
    }
    char out[64];
    const char evil[] = "/classify\r\n127.0.0.1 GET /admin 200\x1B[2J\"q\"\\\xC3\xA9";
    size_t n = txt_log_escape(out, sizeof out, evil, sizeof evil - 1);
    int raw = 0;
    for (size_t i = 0; i < n; i++) raw |= (unsigned char)out[i] < 0x20 || (unsigned char)out[i] >= 0x7F;
    CHECK(!raw && n == strlen(out) && strstr(out, "\\x0D\\x0A") && strstr(out, "\\x1B"), "log escape: %s", out);
    char big[16];
    n = txt_log_escape(big, sizeof big, evil, sizeof evil - 1);
    CHECK(n < sizeof big && !strcmp(big + n - 3, "...") && n == strlen(big), "truncated with ...: %s", big);
    n = txt_log_escape(big, sizeof big, "/a\"b\\", 5);
    CHECK(!strcmp(big, "/a\\\"b\\\\"), "quote and backslash escaped: %s", big);
    n = txt_log_escape(big, 1, "abc", 3);
    CHECK(n == 0 && big[0] == '\0', "a 1-byte buffer gets the empty string");
    return TEST_SUMMARY();
}
