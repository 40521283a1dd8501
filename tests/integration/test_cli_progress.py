"""test_cli_progress.py: the `vit` command line's polish (issue 18): `vit finetune` shows a
progress line with rate and ETA for the feature pass and the training on a terminal (stderr on
a pseudo-terminal), none in a pipe (there only the per-epoch lines) unless --progress asks;
`vit eval` the same on a terminal; `vit classify` without --model uses the shipped model (from
the repository root and from elsewhere); unknown subcommands and options suggest the closest
valid one.  (Not in the ASan pass: test_cli_helpers covers progress.c and suggest.c there, and
test_finetune.py the finetune code.)
"""
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("VITD_BUILD", "build")
VIT = os.path.join(ROOT, BUILD, "vit")
MODEL = os.path.join(ROOT, "models", "fashion-vit")
DATA = os.path.join(ROOT, "tests", "data", "fmnist", "train")
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    detail = " ".join(repr(detail).split())[:400] if not ok else ""
    print(f"{'PASS' if ok else 'FAIL'} {name}{' ' + detail if detail else ''}", flush=True)
    if ok:
        passed += 1
    else:
        failed += 1


def run_pipe(*args, cwd=ROOT, timeout=300):
    p = subprocess.run([VIT, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def run_pty(*args, timeout=300):
    """stderr on a pseudo-terminal, stdout on a pipe: (rc, stdout, what the terminal showed)"""
    master, slave = pty.openpty()
    p = subprocess.Popen([VIT, *args], stdout=subprocess.PIPE, stderr=slave, cwd=ROOT)
    os.close(slave)
    seen = b""
    t0 = time.time()
    while time.time() - t0 < timeout:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif p.poll() is not None:
            break
    out = p.stdout.read().decode()
    rc = p.wait(timeout=60)
    os.close(master)
    return rc, out, seen.decode(errors="replace")


def main():
    tmp = tempfile.mkdtemp(prefix="vit_cli_")
    small = os.path.join(tmp, "train")          # 12 images per label: 3 feature batches
    for label in sorted(os.listdir(DATA)):
        os.makedirs(os.path.join(small, label))
        for f in sorted(os.listdir(os.path.join(DATA, label)))[:12]:
            shutil.copy(os.path.join(DATA, label, f), os.path.join(small, label))
    ft = ["finetune", "--model", MODEL, "--data", small, "--epochs", "6", "--threads", "2"]

    # ---- finetune on a terminal: progress lines with rate and ETA -----------------------------
    rc, out, term = run_pty(*ft, "--out", os.path.join(tmp, "a"))
    check("finetune on a terminal: exit 0 and the JSON summary on stdout", rc == 0 and '"examples":36' in out, (rc, out, term[-300:]))
    check("finetune on a terminal: feature pass progress (bar, images/s, ETA)",
          "\r[" in term and "36/36" in term and "images/s" in term and "ETA " in term, term[-600:])
    check("finetune on a terminal: training progress (epochs/s, ETA, loss, val_accuracy)",
          "6/6" in term and "epochs/s" in term and "val_accuracy" in term, term[-600:])
    check("finetune on a terminal: the features summary line still printed", "features: 36 images" in term, term[-300:])

    # ---- the same in a pipe: no progress line, the per-epoch lines as before --------------------
    rc, out, err = run_pipe(*ft, "--out", os.path.join(tmp, "b"))
    check("finetune in a pipe: exit 0", rc == 0, (rc, err[-300:]))
    check("finetune in a pipe: no progress line (no \\r, no ETA, no rate)",
          "\r" not in err and "ETA" not in err and "epochs/s" not in err, err[-400:])
    check("finetune in a pipe: one line per epoch, as before", err.count("epoch ") == 6 and "epoch 6/6" in err, err)
    s_tty, s_pipe = json.loads(out), None
    rc, out2, err2 = run_pipe(*ft, "--out", os.path.join(tmp, "c"), "--progress")
    check("finetune --progress in a pipe: plain progress lines with ETA, no \\r",
          rc == 0 and "ETA" in err2 and "images/s" in err2 and "\r" not in err2, err2[-400:])
    s_pipe = json.loads(out2) if rc == 0 else {}
    check("the progress option changes nothing in the result", s_tty.get("loss") == s_pipe.get("loss") and
          s_tty.get("val_accuracy") == s_pipe.get("val_accuracy"), (s_tty, s_pipe))
    rc, out, term = run_pty(*ft, "--out", os.path.join(tmp, "d"), "--no-progress")
    check("finetune --no-progress on a terminal: no progress line", rc == 0 and "ETA" not in term and
          "epoch 6/6" in term, term[-300:])

    # ---- eval on a terminal -------------------------------------------------------------------
    ev = os.path.join(tmp, "imagefolder")
    for name in ("Sneaker", "Coat", "Bag", "Dress", "Sandal", "Shirt", "Trouser", "Pullover"):
        os.makedirs(os.path.join(ev, name))
        shutil.copy(os.path.join(ROOT, "tests", "data", name.lower() + ".png"), os.path.join(ev, name))
    rc, out, term = run_pty("eval", "--model", MODEL, "--data", ev, "--batch", "1", "--threads", "2")
    check("eval on a terminal: progress line with images/s and ETA", rc == 0 and "\r[" in term and "images/s" in term and
          "ETA " in term and "8/8" in term, (rc, term[-300:]))
    rc, out, err = run_pipe("eval", "--model", MODEL, "--data", ev, "--batch", "1", "--threads", "2")
    check("eval in a pipe: no progress line", rc == 0 and "\r" not in err and "ETA" not in err, (rc, err[-300:]))

    # ---- classify without --model: the shipped model ------------------------------------------
    img = os.path.join(ROOT, "tests", "data", "sneaker.png")
    rc1, o1, e1 = run_pipe("classify", "--model", MODEL, img)
    rc2, o2, e2 = run_pipe("classify", img)
    check("classify without --model = with --model models/fashion-vit", rc1 == 0 and rc2 == 0 and o1 == o2 and
          "Sneaker" in o2, (rc2, o2[:200], e2[-200:]))
    rc3, o3, e3 = run_pipe("classify", img, cwd=tmp)
    check("classify without --model from another directory finds the model beside the binary",
          rc3 == 0 and json.loads(o3)["predictions"] == json.loads(o1)["predictions"], (rc3, e3[-200:]))
    rc, o, e = run_pipe("classify")
    check("classify with no image: usage error 2", rc == 2 and "IMAGE" in e, (rc, e[-200:]))

    # ---- suggestions --------------------------------------------------------------------------
    cases = [
        (["clasify", img], "vit: did you mean 'classify'?"),
        (["finetune", "--epoch", "3"], "did you mean '--epochs'?"),
        (["finetune", "--model", MODEL, "--data", small, "--out", tmp + "/e", "--progres"], "did you mean '--progress'?"),
        (["eval", "--modle", MODEL], "did you mean '--model'?"),
        (["classify", "--top-kk", "3", img], "did you mean '--top-k'?"),
        (["info", "--jsn"], "did you mean '--json'?"),
        (["bench", "--batchs", "2"], "did you mean '--batch'?"),
    ]
    for args, want in cases:
        rc, o, e = run_pipe(*args)
        check(f"vit {' '.join(a for a in args if not a.startswith('/'))[:40]}: exit 2 and \"{want}\"",
              rc == 2 and want in e, (rc, e[-300:]))
    rc, o, e = run_pipe("xyzzy")
    check("vit xyzzy: exit 2, unknown command, no far-fetched suggestion",
          rc == 2 and "unknown command 'xyzzy'" in e and "did you mean" not in e, (rc, e[-200:]))
    rc, o, e = run_pipe("finetune", "--zzzzzz", "1")
    check("an option like none: no suggestion", rc == 2 and "did you mean" not in e, e[-200:])

    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
