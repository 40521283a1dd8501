#!/usr/bin/python3
"""readme_flags.py: rewrite README.md's flag table (between <!-- FLAGS --> and <!-- /FLAGS -->)
and server/README.md's verbatim `vitd --help` block (the fenced block after the line ending in
"`vitd --help`:") from `vitd --help`, so both list exactly the daemon's flags and defaults.

    scripts/readme_flags.py [build/vitd] [README.md] [server/README.md]
"""
import re
import subprocess
import sys

vitd = sys.argv[1] if len(sys.argv) > 1 else "build/vitd"
readme = sys.argv[2] if len(sys.argv) > 2 else "README.md"
server_readme = sys.argv[3] if len(sys.argv) > 3 else "server/README.md"
out = subprocess.run([vitd, "--help"], capture_output=True, text=True, check=True).stdout
rows = []
lines = out.splitlines()
for i, line in enumerate(lines):
    m = re.match(r"^  (--[a-z0-9-]+)\s+(.*)$", line)
    if not m or m.group(1) == "--help":
        continue
    d = re.match(r"^\s+\(default: (.*); env (VITD_[A-Z0-9_]+)\)$", lines[i + 1] if i + 1 < len(lines) else "")
    default, env = (d.group(1), d.group(2)) if d else ("", "")
    default = "" if default == "-" else default
    meaning = m.group(2).replace("|", "\\|")
    rows.append(f"| `{m.group(1)}` | `{env}` | {('`' + default + '`') if default else ''} | {meaning} |")
table = "\n".join(["<!-- FLAGS -->", "| flag | environment | default | meaning |", "|---|---|---|---|"]
                  + rows + ["<!-- /FLAGS -->"])
text = open(readme).read()
new, n = re.subn(r"<!-- FLAGS -->.*?<!-- /FLAGS -->", lambda _: table, text, flags=re.S)
if n != 1:
    sys.exit(f"{readme}: no <!-- FLAGS --> ... <!-- /FLAGS --> block")
open(readme, "w").write(new)
print(f"{readme}: {len(rows)} flags")

text = open(server_readme).read()
new, n = re.subn(r"(`vitd --help`:\n\n```\n).*?(```)", lambda m: m.group(1) + out + m.group(2), text,
                 count=1, flags=re.S)
if n != 1:
    sys.exit(f"{server_readme}: no fenced block after \"`vitd --help`:\"")
open(server_readme, "w").write(new)
print(f"{server_readme}: help block rewritten")
