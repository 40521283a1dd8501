/* textcheck.h: text from the wire made safe for where it goes: strict UTF-8 checks for names we
 * store and echo back in JSON (labels), and escaping for the access log (a decoded URL path may
 * hold newlines that forge log lines, or terminal escape sequences).  Pure functions, no
 * allocation, thread-safe. */
#ifndef SRV_TEXTCHECK_H
#define SRV_TEXTCHECK_H
#include <stddef.h>

/* 1 when s[0..n) is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF) without
 * control characters (C0 including NUL, DEL, C1); otherwise 0 and, when why is given, the reason
 * with the byte offset. */
int txt_utf8_clean(const char *s, size_t n, char *why, size_t whylen);

/* Copy s[0..n) into out (cap bytes, always NUL-terminated) for a log line: printable ASCII as
 * is except '\' and '"', which are backslash-escaped; every other byte (controls, DEL, bytes >=
 * 0x80) as \xHH.  Stops before overflowing (the copy ends with "..." when cut).  Returns the
 * length written. */
size_t txt_log_escape(char *out, size_t cap, const char *s, size_t n);

#endif
