#!/usr/bin/python3
"""test_attacks.py: the short form of `make test-attack` in `make test`: every attack of
tests/attack/attacklib.py (slow headers, slow body, connection flood, costly images, body flood,
JSON flood) mounted for 4 s on one real daemon on 127.0.0.1 while a well-behaved client measures
its latency; the checks and printed figures are tests/attack/run_attacks.py's (no soak here)."""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.exit(subprocess.call([sys.executable, os.path.join(here, "..", "attack", "run_attacks.py"), "--seconds", "4"]))
