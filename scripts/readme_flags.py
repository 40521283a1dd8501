#!/usr/bin/python3
"""readme_flags.py: rewrite README.md's flag table (between <!-- FLAGS --> and <!-- /FLAGS -->)
and server/README.md's verbatim `vitd --help` block (the fenced block after the line ending in
"`vitd --help`:") from `vitd --help`, so both list exactly the daemon's flags and defaults.
replace_table() is shared with scripts/readme_knobs.py (the environment-knob table).

    scripts/readme_flags.py [build/vitd] [README.md] [server/README.md]
"""
import re
import subprocess
import sys


def replace_table(text, marker, header, rows, where):
    """text with the block <!-- MARKER --> ... <!-- /MARKER --> rewritten as a markdown table of
    header (column names) and rows (lists of cells, '|' escaped here); exits naming `where` when
    the block is missing"""
    def line(cells):
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    table = "\n".join([f"<!-- {marker} -->", line(header), "|" + "---|" * len(header)]
                      + [line(r) for r in rows] + [f"<!-- /{marker} -->"])
    new, n = re.subn(rf"<!-- {marker} -->.*?<!-- /{marker} -->", lambda _: table, text, flags=re.S)
    if n != 1:
        sys.exit(f"{where}: no <!-- {marker} --> ... <!-- /{marker} --> block")
    return new


def main():
    vitd = sys.argv[1] if len(sys.argv) > 1 else "build/vitd"
    readme = sys.argv[2] if len(sys.argv) > 2 else "README.md"
    server_readme = sys.argv[3] if len(sys.argv) > 3 else "server/README.md"
    out = subprocess.run([vitd, "--help"], capture_output=True, text=True, check=True).stdout
    rows = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        # a secret: listed by its variable alone (environment only, no flag, no default shown)
        m = re.match(r"^  (VITD_[A-Z0-9_]+)\s+(.*)$", line)
        if m:
            rows.append(["", f"`{m.group(1)}`", "", m.group(2) + " (secret: environment only, never printed)"])
            continue
        m = re.match(r"^  (--[a-z0-9-]+)\s+(.*)$", line)
        if not m or m.group(1) == "--help":
            continue
        d = re.match(r"^\s+\(default: (.*); env (VITD_[A-Z0-9_]+)\)$", lines[i + 1] if i + 1 < len(lines) else "")
        default, env = (d.group(1), d.group(2)) if d else ("", "")
        default = "" if default == "-" else default
        rows.append([f"`{m.group(1)}`", f"`{env}`", f"`{default}`" if default else "", m.group(2)])
    text = open(readme).read()
    open(readme, "w").write(replace_table(text, "FLAGS", ["flag", "environment", "default", "meaning"], rows, readme))
    print(f"{readme}: {len(rows)} flags")

    text = open(server_readme).read()
    new, n = re.subn(r"(`vitd --help`:\n\n```\n).*?(```)", lambda m: m.group(1) + out + m.group(2), text,
                     count=1, flags=re.S)
    if n != 1:
        sys.exit(f"{server_readme}: no fenced block after \"`vitd --help`:\"")
    open(server_readme, "w").write(new)
    print(f"{server_readme}: help block rewritten")


if __name__ == "__main__":
    main()
