/* textcheck.c: UTF-8 checks and log escaping (see textcheck.h). */
#include "textcheck.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* the length of the UTF-8 sequence at s[i] (1..4) and its code point, or 0 when malformed */
static int utf8_seq(const unsigned char *s, size_t n, size_t i, uint32_t *cp) {
    unsigned char b = s[i];
    int len;
    uint32_t v, min;
    if (b < 0x80) { *cp = b; return 1; }
    if (b >= 0xC2 && b <= 0xDF) { len = 2; v = b & 0x1F; min = 0x80; }
    else if (b >= 0xE0 && b <= 0xEF) { len = 3; v = b & 0x0F; min = 0x800; }
    else if (b >= 0xF0 && b <= 0xF4) { len = 4; v = b & 0x07; min = 0x10000; }
    else return 0;
    if (n - i < (size_t)len) return 0;
    for (int k = 1; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i + k] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

int txt_utf8_clean(const char *str, size_t n, char *why, size_t whylen) {
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int len = utf8_seq(s, n, i, &cp);
        if (!len) {
            if (why) snprintf(why, whylen, "not valid UTF-8 at byte %zu", i);
            return 0;
        }
        if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
            if (why) snprintf(why, whylen, "control character U+%04X at byte %zu", (unsigned)cp, i);
            return 0;
        }
        i += (size_t)len;
    }
    return 1;
}

size_t txt_log_escape(char *out, size_t cap, const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t w = 0;
    if (!cap) return 0;
    for (size_t i = 0; i < n; i++) {
        char tmp[5];
        size_t k;
        if (s[i] >= 0x20 && s[i] < 0x7F && s[i] != '\\' && s[i] != '"') { tmp[0] = (char)s[i]; k = 1; }
        else if (s[i] == '\\' || s[i] == '"') { tmp[0] = '\\'; tmp[1] = (char)s[i]; k = 2; }
        else { snprintf(tmp, sizeof tmp, "\\x%02X", s[i]); k = 4; }
        if (w + k + 4 > cap) {                    /* room for "..." and the NUL */
            if (w + 4 <= cap) { memcpy(out + w, "...", 3); w += 3; }
            break;
        }
        memcpy(out + w, tmp, k);
        w += k;
    }
    out[w] = '\0';
    return w;
}
