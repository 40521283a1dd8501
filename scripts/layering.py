#!/usr/bin/env python3
"""layering.py: checks the #include arrows between the parts of vitd and fails on a forbidden one.

Rules (over every .c/.h/.cu/.cuh file found recursively under engine/, kernels/, server/, so
files moved into subfolders are checked wherever they land):
  1. engine/ (the CLI included) includes nothing from server/.
  2. kernels/ include nothing from engine/ or server/.
  3. No include cycle among the project's headers and sources (anywhere).
  4. The CLI (engine/cli/) and the server (server/) use only the engine's public headers: vit.h
     plus the exceptions in PUBLIC_EXCEPTIONS below, each with its reason.
An include "x.h" resolves like the compiler does with the Makefile's -I flags: the including
file's folder first, then engine/, then kernels/.  System headers (<...>) and names found
nowhere in the tree are ignored.

usage: layering.py [--root DIR] [-v]   exit 0: clean; 1: violations (one line each)
"""
import argparse
import os
import re
import sys

PARTS = ("engine", "kernels", "server")
EXTS = (".c", ".h", ".cu", ".cuh")
INCLUDE_DIRS = ("engine", "kernels")          # the Makefile's -I, in order

# Engine headers the CLI and the server may include besides vit.h (matched by file name, so a
# header moved into an engine subfolder keeps its exception).
PUBLIC_EXCEPTIONS = {
    # small helpers every tool uses (vit_now, vit_read_file, vit_errf, atomic file writes)
    "util.h": "shared helpers: clock, bounded file read, error formatting, atomic writes",
    # /v1/models and `vit info` print the same model description
    "describe.h": "one JSON description of a model for the CLI and the server",
    # head files: vit_head_save is declared in vit.h, its key/value chunk type lives here
    "safetensors_write.h": "the admin store writes head versions through stw_chunk",
    # the examples files of --state-dir are safetensors, read back with the engine's strict reader
    "safetensors.h": "the admin store reads its examples files back (st_open_buffer, st_read_f32)",
}
# Extra engine headers the CLI alone may include (tools that measure or feed engine internals).
CLI_EXCEPTIONS = {
    "cpu_gemm.h": "`vit bench` times the CPU GEMM kernels directly",
    "cpu_gemm_i8.h": "`vit bench` times the INT8 GEMM directly",
}
# Engine headers a kernel may include, (file name, including kernel): kept until the engine side
# moves the shared piece next to the kernels.
KERNEL_EXCEPTIONS = {
    ("train_cuda.h", "linear_ce.cuh"): "train_coeffs and train_optim_update, the CPU optimizer step "
    "that vk_optim_update must match bit for bit, live in the engine's training seam",
}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def part_of(rel):
    top = rel.split("/", 1)[0]
    if top == "engine" and rel.startswith("engine/cli/"):
        return "cli"
    return top if top in PARTS else None


def collect(root):
    files = []
    for part in PARTS:
        base = os.path.join(root, part)
        for d, _, names in os.walk(base):
            for n in names:
                if n.endswith(EXTS):
                    files.append(os.path.relpath(os.path.join(d, n), root).replace(os.sep, "/"))
    return sorted(files)


def resolve(root, rel, name):
    cands = [os.path.join(os.path.dirname(rel), name)] + [os.path.join(i, name) for i in INCLUDE_DIRS]
    for c in cands:
        c = os.path.normpath(c).replace(os.sep, "/")
        if not c.startswith("..") and os.path.isfile(os.path.join(root, c)):
            return c
    return None


def graph(root, files):
    g = {}
    for rel in files:
        with open(os.path.join(root, rel), encoding="utf-8", errors="replace") as f:
            text = f.read()
        g[rel] = [(name, resolve(root, rel, name)) for name in INCLUDE_RE.findall(text)]
    return g


def arrow_errors(g):
    errs = []
    for rel, incs in g.items():
        src = part_of(rel)
        for name, tgt in incs:
            if tgt is None:
                continue
            dst = part_of(tgt)
            if src in ("engine", "cli") and dst == "server":
                errs.append(f"{rel}: includes {tgt}: engine/ must not include server/")
            if src == "kernels" and dst in ("engine", "cli", "server") and \
                    (os.path.basename(tgt), os.path.basename(rel)) not in KERNEL_EXCEPTIONS:
                errs.append(f"{rel}: includes {tgt}: kernels/ must not include {dst}/")
            if src in ("cli", "server") and dst == "engine":
                base = os.path.basename(tgt)
                ok = base == "vit.h" or base in PUBLIC_EXCEPTIONS or (src == "cli" and base in CLI_EXCEPTIONS)
                if not ok:
                    who = "the CLI" if src == "cli" else "server/"
                    errs.append(f"{rel}: includes {tgt}: {who} may use only engine's public headers "
                                f"(vit.h, {', '.join(sorted(PUBLIC_EXCEPTIONS))})")
    return errs


def cycle_errors(g):
    """Every include cycle once (Tarjan's strongly connected components, plus self-includes)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def strong(v):
        work = [(v, iter([t for _, t in g.get(v, []) if t]))]
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = n[0]; n[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter([t for _, t in g.get(w, []) if t])))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop(); on.discard(w); comp.append(w)
                        if w == node:
                            break
                    selfloop = any(t == node for _, t in g.get(node, []))
                    if len(comp) > 1 or selfloop:
                        out.append("include cycle: " + " -> ".join(sorted(comp)))

    for v in sorted(g):
        if v not in index:
            strong(v)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    ap.add_argument("-v", action="store_true", help="list the files checked")
    a = ap.parse_args()
    files = collect(a.root)
    if not files:
        print(f"layering: no sources under {a.root}", file=sys.stderr)
        return 1
    g = graph(a.root, files)
    errs = arrow_errors(g) + cycle_errors(g)
    if a.v:
        for f in files:
            print("checked", f)
    for e in errs:
        print(e)
    narrows = sum(1 for incs in g.values() for _, t in incs if t)
    print(f"layering: {len(files)} files, {narrows} include arrows, {len(errs)} violation(s)")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
