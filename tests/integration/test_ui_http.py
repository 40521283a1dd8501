"""test_ui_http.py: the web page's HTTP side (server/ui.c) without a browser, so that it also
runs under ASan+UBSan: GET and HEAD / with Content-Type, Content-Security-Policy, ETag and
Cache-Control; 304 on If-None-Match; the script and stylesheet by content hash (immutable);
405 and 404 as JSON errors; --ui off and VITD_UI=off; a bad --ui value refuses to start.
# asan: yes
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import vitd_testlib as T  # noqa: E402

check = T.check
ENV = {"VITD_UI": ""}


def main():
    os.environ.pop("VITD_UI", None)
    d = T.Daemon()
    if not check(d.wait_ready(), "daemon ready (--ui on by default)", d.logtext()[-300:]):
        return T.summary()
    st, h, body = d.request("GET", "/")
    html = body.decode()
    csp = h.get("content-security-policy", "")
    check(st == 200 and h.get("content-type") == "text/html; charset=utf-8" and "<!doctype html>" in html,
          "GET /: 200 text/html", (st, h.get("content-type")))
    check("default-src 'none'" in csp and "script-src 'self'" in csp and "style-src 'self'" in csp
          and "unsafe" not in csp and "frame-ancestors 'none'" in csp, "strict CSP", csp)
    check(h.get("x-content-type-options") == "nosniff" and h.get("referrer-policy") == "no-referrer",
          "nosniff and no-referrer", h)
    etag = h.get("etag", "")
    check(re.fullmatch(r'"[0-9a-f]{16}"', etag) is not None and h.get("cache-control") == "no-cache",
          "ETag (16 hex digits) and Cache-Control: no-cache", (etag, h.get("cache-control")))
    check(int(h.get("content-length", -1)) == len(body), "Content-Length matches the body", h.get("content-length"))
    st, h2, b2 = d.request("HEAD", "/")
    check(st == 200 and b2 == b"" and h2.get("etag") == etag and h2.get("content-type", "").startswith("text/html"),
          "HEAD /: the headers, no body", (st, len(b2)))
    for inm, want in ((etag, 304), ("W/" + etag, 304), ('"x", ' + etag, 304), ("*", 304), ('"0123456789abcdef"', 200),
                      (etag[:-2] + '"', 200)):
        st, h3, b3 = d.request("GET", "/", headers={"If-None-Match": inm})
        check(st == want and (want == 200 or (b3 == b"" and h3.get("etag") == etag)),
              f"If-None-Match: {inm} -> {want}", (st, len(b3)))
    refs = re.findall(r'(?:src|href)="(/ui/[a-z]+\.(js|css))\?v=([0-9a-f]{16})"', html)
    check(len(refs) == 2, "the page names app.js and app.css by content hash", refs)
    for path, ext, v in refs:
        st, ha, ba = d.request("GET", f"{path}?v={v}")
        want = "text/javascript; charset=utf-8" if ext == "js" else "text/css; charset=utf-8"
        check(st == 200 and ha.get("content-type") == want and ha.get("etag") == f'"{v}"'
              and "immutable" in ha.get("cache-control", "") and len(ba) > 100,
              f"{path}?v=hash: {want}, ETag = the hash, immutable", (st, ha))
        st, hb, _ = d.request("GET", f"{path}?v=0000")
        check(st == 200 and hb.get("cache-control") == "no-cache", f"{path} with a stale ?v=: no-cache", hb.get("cache-control"))
    js = d.request("GET", "/ui/app.js")[2].decode()
    check(not re.search(r"https?://", js) and "eval(" not in js, "app.js loads nothing from another origin, no eval")
    st, h, r = d.json("POST", "/", b"x")
    check(st == 405 and h.get("allow") == "GET, HEAD" and r.get("error", {}).get("code") == "method_not_allowed",
          "POST /: 405 with Allow and a JSON error", (st, h.get("allow"), r))
    st, h, r = d.json("DELETE", "/ui/app.js")
    check(st == 405 and h.get("allow") == "GET, HEAD", "DELETE /ui/app.js: 405 with Allow", (st, r))
    st, _, r = d.json("GET", "/ui/../etc/passwd")
    check(st == 404 and r.get("error", {}).get("code") == "not_found", "/ui/../etc/passwd: 404", (st, r))
    st, _, r = d.json("GET", "/ui/")
    check(st == 404, "/ui/: 404", st)
    st, _, r = d.json("GET", "/index.html")
    check(st == 404, "/index.html: 404 (only / is the page)", st)
    st, _, _ = d.request("GET", "/ui/app.js" + "x" * 5000)
    check(st in (404, 414, 431), "a 5000-character /ui/ path: refused", st)
    st, _, r = d.json("POST", "/classify", b"", {"Content-Type": "image/png"})
    check(st == 400, "the API still answers beside the page", st)
    d.stop()

    off = T.Daemon("--ui", "off")
    check(off.wait_ready(), "--ui off starts")
    for p in ("/", "/ui/app.js", "/ui/app.css"):
        st, _, r = off.json("GET", p)
        check(st == 404 and r.get("error", {}).get("code") == "not_found", f"--ui off: {p} is 404", (st, r))
    st, _, _ = off.json("GET", "/healthz")
    check(st == 200, "--ui off: the API is served", st)
    off.stop()
    env_off = T.Daemon(env={"VITD_UI": "off"})
    check(env_off.wait_ready() and env_off.request("GET", "/")[0] == 404, "VITD_UI=off: / is 404")
    env_off.stop()
    flag_wins = T.Daemon("--ui", "on", env={"VITD_UI": "off"})
    check(flag_wins.wait_ready() and flag_wins.request("GET", "/")[0] == 200, "--ui on wins over VITD_UI=off")
    flag_wins.stop()
    bad = T.Daemon("--ui", "maybe")
    rc = bad.proc.wait(60)
    check(rc == 2 and "--ui: invalid value 'maybe'" in bad.logtext(), "--ui maybe: refuses to start (exit 2)", (rc, bad.logtext()[-200:]))
    return T.summary()


if __name__ == "__main__":
    sys.exit(main())
