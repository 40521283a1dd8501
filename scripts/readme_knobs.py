#!/usr/bin/python3
"""readme_knobs.py: rewrite README.md's table of the engine's environment knobs (between
<!-- KNOBS --> and <!-- /KNOBS -->) from `vit knobs --json`, i.e. from engine/knobs.c's table, so
the README lists exactly the knobs the engine reads, with their allowed values and defaults.
The VIT_* variables of the caller's environment are dropped first (the table shows defaults).

    scripts/readme_knobs.py [build/vit] [README.md]
    scripts/readme_knobs.py --check [build/vit] [README.md]   # exit 1 when the table is stale
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from readme_flags import replace_table  # noqa: E402  (the flag table's generator, same format)

args = sys.argv[1:]
check = "--check" in args
args = [a for a in args if a != "--check"]
vit = args[0] if len(args) > 0 else "build/vit"
readme = args[1] if len(args) > 1 else "README.md"
env = {k: v for k, v in os.environ.items() if not k.startswith("VIT_")}
knobs = json.loads(subprocess.run([vit, "knobs", "--json"], capture_output=True, text=True, check=True,
                                  env=env).stdout)
rows = [[f"`{k['name']}`", k["type"], f"`{k['allowed']}`", f"`{k['default']}`", k["doc"]] for k in knobs]
text = open(readme).read()
new = replace_table(text, "KNOBS", ["variable", "type", "allowed", "default", "meaning"], rows, readme)
if check:
    if new != text:
        sys.exit(f"{readme}: the knob table differs from `{vit} knobs --json` (run scripts/readme_knobs.py)")
    print(f"{readme}: knob table up to date ({len(rows)} knobs)")
else:
    open(readme, "w").write(new)
    print(f"{readme}: {len(rows)} knobs")
