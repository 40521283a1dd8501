"""test_finetune.py: `vit finetune` end to end on the shipped Fashion-MNIST model: teach the
coarse labels tops / footwear / other from tests/data/fmnist/train (60 images each), in replace
and in extend mode; the written directory is a complete model (config labels, preprocessing
copied, `vit info` reads it); bad images are skipped and reported; usage errors.
# asan: yes
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("VITD_BUILD", "build")
VIT = os.path.join(ROOT, BUILD, "vit")
MODEL = os.path.join(ROOT, "models", "fashion-vit")
DATA = os.path.join(ROOT, "tests", "data", "fmnist", "train")
# a GPU (then a CUDA build trains there with auto, and --device cuda is not an error)
HAVE_GPU = any(n.startswith("nvidia") and n[6:].isdigit() for n in os.listdir("/dev"))
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    detail = " ".join(str(detail).split())[:400] if not ok else ""
    print(f"{'PASS' if ok else 'FAIL'} {name}{' ' + detail if detail else ''}", flush=True)
    if ok:
        passed += 1
    else:
        failed += 1


def run(*args, timeout=300):
    p = subprocess.run([VIT, *args], capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def summary(out):
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {}


def main():
    tmp = tempfile.mkdtemp(prefix="vit_finetune_")
    try:
        # replace: exactly the three folder labels
        out = os.path.join(tmp, "coarse")
        rc, so, se = run("finetune", "--model", MODEL, "--data", DATA, "--out", out, "--epochs", "40",
                         "--lr", "0.01", "--val-fraction", "0.2", "--seed", "3")
        s = summary(so)
        check("replace: exit 0 and a JSON summary", rc == 0 and s.get("examples") == 180,
              f"rc={rc} {so.strip()[-300:]} {se.strip()[-300:]}")
        check("replace: 3 labels, stratified 20% validation split",
              s.get("labels") == 3 and s.get("val") == 36 and s.get("train") == 144, str(s))
        # the early checkpoint's features give ~88%, the final model's more; random would be ~33%
        check("replace: the new head learned (train accuracy > 0.8)", s.get("train_accuracy", 0) > 0.8,
              str(s.get("train_accuracy")))
        check("replace: per-epoch progress on stderr", se.count("epoch ") >= 40 and "val_accuracy" in se)
        check("replace: the summary names the training device (auto: the session's)",
              s.get("device") in (("cuda", "cpu") if HAVE_GPU else ("cpu",)), str(s.get("device")))
        cfg = json.load(open(os.path.join(out, "config.json")))
        check("replace: config.json id2label/label2id are the folder labels",
              cfg.get("id2label") == {"0": "footwear", "1": "other", "2": "tops"}
              and cfg.get("label2id") == {"footwear": 0, "other": 1, "tops": 2}, str(cfg.get("id2label")))
        src_cfg = json.load(open(os.path.join(MODEL, "config.json")))
        same = {k: v for k, v in src_cfg.items() if k not in ("id2label", "label2id", "num_labels")}
        check("replace: the rest of config.json is unchanged",
              all(cfg.get(k) == v for k, v in same.items()))
        check("replace: preprocessor_config.json copied",
              open(os.path.join(out, "preprocessor_config.json"), "rb").read()
              == open(os.path.join(MODEL, "preprocessor_config.json"), "rb").read())
        # held-out accuracy of the written model through `vit eval` (folders match the new labels)
        rc, so, se = run("eval", "--model", out, "--data", os.path.join(ROOT, "tests", "data", "fmnist", "test"), "--json")
        ev = summary(so)
        tr = json.load(open(os.path.join(MODEL, "config.json"))).get("vitd_training", {})
        final = tr.get("epochs_done", 0) >= tr.get("epochs", 1)
        bar = 0.93 if final else 0.75   # early checkpoint: ~0.85 measured; chance is 0.33
        check(f"replace: `vit eval` of the new model on 300 held-out images >= {bar}",
              rc == 0 and ev.get("images") == 300 and ev.get("top1", 0) >= bar, f"rc={rc} top1={ev.get('top1')} {se[-200:]}")
        rc, so, se = run("info", "--model", out)
        check("replace: `vit info` loads the new directory", rc == 0 and "3 classes" in so
              and "footwear" in so, so[-300:] + se[-300:])

        # extend: a folder named like an existing label (file-system-safe form) trains that row
        data2 = os.path.join(tmp, "data2")
        os.makedirs(os.path.join(data2, "Ankle_boot"))
        os.makedirs(os.path.join(data2, "tops"))
        os.makedirs(os.path.join(data2, "empty"))
        for i, f in enumerate(sorted(os.listdir(os.path.join(DATA, "footwear")))[:20]):
            shutil.copy(os.path.join(DATA, "footwear", f), os.path.join(data2, "Ankle_boot", f))
        for f in sorted(os.listdir(os.path.join(DATA, "tops")))[:20]:
            shutil.copy(os.path.join(DATA, "tops", f), os.path.join(data2, "tops", f))
        with open(os.path.join(data2, "tops", "broken.png"), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\nnot really")
        out2 = os.path.join(tmp, "extended")
        rc, so, se = run("finetune", "--model", MODEL, "--data", data2, "--out", out2, "--labels",
                         "extend", "--epochs", "5", "--optimizer", "sgd", "--lr", "0.01",
                         "--val-fraction", "0")
        s = summary(so)
        check("extend: exit 0, the corrupt image skipped and reported",
              rc == 0 and s.get("examples") == 40 and s.get("skipped") == 1 and "broken.png" in se,
              f"rc={rc} {so.strip()[-200:]} {se.strip()[-300:]}")
        cfg = json.load(open(os.path.join(out2, "config.json"))) if rc == 0 else {}
        labels = [cfg.get("id2label", {}).get(str(i)) for i in range(11)]
        check("extend: the ten labels kept in order, 'tops' appended, no empty folder label",
              labels[:10] == [src_cfg["id2label"][str(i)] for i in range(10)] and labels[10] == "tops"
              and "empty" not in cfg.get("label2id", {}), str(labels))
        check("extend: empty class folder reported", "empty: no images" in se)

        # errors
        rc, so, se = run("finetune", "--model", MODEL, "--data", DATA)
        check("missing --out is a usage error (2)", rc == 2, f"rc={rc}")
        rc, so, se = run("finetune", "--model", MODEL, "--data", os.path.join(tmp, "nope"), "--out",
                         os.path.join(tmp, "x"))
        check("missing data folder is an i/o error (3)", rc == 3 and "nope" in se, f"rc={rc} {se.strip()}")
        rc, so, se = run("finetune", "--model", MODEL, "--data", DATA, "--out", out, "--optimizer", "adam")
        check("unknown optimizer rejected (2)", rc == 2 and "adamw or sgd" in se, f"rc={rc} {se.strip()}")
        rc, so, se = run("finetune", "--model", MODEL, "--data", DATA, "--out", out, "--device", "gpu")
        check("unknown --device rejected (2)", rc == 2 and "auto, cpu or cuda" in se, f"rc={rc} {se.strip()}")
        if not HAVE_GPU:
            rc, so, se = run("finetune", "--model", MODEL, "--data", DATA, "--out",
                             os.path.join(tmp, "cuda"), "--device", "cuda")
            check("--device cuda without a GPU: device not available (8), clear message",
                  rc == 8 and "cuda" in se and not os.path.exists(os.path.join(tmp, "cuda")),
                  f"rc={rc} {se.strip()[-300:]}")
        rc, so, se = run("finetune", "--model", MODEL, "--data", DATA, "--out", out, "--lr", "-1")
        check("negative lr rejected (2)", rc == 2, f"rc={rc} {se.strip()}")
        rc, so, se = run("finetune", "--model", out, "--data", DATA, "--out", out, "--epochs", "1")
        check("writing over the source directory is refused", rc != 0 and "source" in se,
              f"rc={rc} {se.strip()[-200:]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
