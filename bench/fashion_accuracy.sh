#!/usr/bin/env bash
# fashion_accuracy.sh: top-1 accuracy of a Fashion-MNIST model directory (default: the shipped
# models/fashion-vit) on the 10,000 TEST images written as PNG files, measured two ways on the
# same files in one run:
#   ours:    build/vit eval (our PNG decoder, preprocessing and CPU engine)
#   PyTorch: models/fashion-vit/eval_torch.py (PIL + torchvision transforms as
#            preprocessor_config.json says + models/vit_torch.py on the same model.safetensors)
# and the per-image agreement of the two.  Writes bench/results/fashion_accuracy.md.
#   bench/fashion_accuracy.sh                       # MODEL=..., THREADS=2, LIMIT=0 (all), OUT=...
# Needs Debian dataset-fashion-mnist, python3-torch, python3-torchvision, python3-pil
# (scripts/deps.sh bench).  The PNG export is cached in $FASHION_PNG_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/fashion-vit}
THREADS=${THREADS:-2}
BATCH=${BATCH:-64}
LIMIT=${LIMIT:-0}
PNG=${FASHION_PNG_DIR:-${TMPDIR:-/tmp}/vitd-fashion-test-png}
OUT=${OUT:-bench/results/fashion_accuracy.md}
PY=/usr/bin/python3
VIT=${VITD_BUILD:-build}/vit
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

[ -x "$VIT" ] || { echo "fashion_accuracy: build $VIT first (make)" >&2; exit 1; }
n=0; [ -d "$PNG" ] && n=$(find "$PNG" -name '*.png' | wc -l)
if [ "$n" -ne 10000 ]; then
  rm -rf "$PNG"
  echo "exporting the Fashion-MNIST test split to $PNG" >&2
  $PY models/fashion-vit/export_pngs.py "$PNG"
fi

lim=(); [ "$LIMIT" -gt 0 ] && lim=(--limit "$LIMIT")
CMD_OURS="$VIT eval --model $MODEL --data $PNG --batch $BATCH --threads $THREADS ${lim[*]:-}"
CMD_TORCH="OMP_WAIT_POLICY=PASSIVE $PY models/fashion-vit/eval_torch.py --model $MODEL --data $PNG --batch $BATCH --threads $THREADS ${lim[*]:-}"
echo "+ $CMD_OURS" >&2
"$VIT" eval --model "$MODEL" --data "$PNG" --batch "$BATCH" --threads "$THREADS" "${lim[@]}" \
  --predictions "$W/ours.tsv" --json > "$W/ours.json"
echo "+ $CMD_TORCH" >&2
OMP_WAIT_POLICY=PASSIVE $PY models/fashion-vit/eval_torch.py --model "$MODEL" --data "$PNG" \
  --batch "$BATCH" --threads "$THREADS" "${lim[@]}" --json "$W/torch.json" \
  --predictions "$W/torch.tsv" > "$W/torch.txt"
cat "$W/torch.txt"

$PY - "$W" "$MODEL" "$OUT" "$CMD_OURS" "$CMD_TORCH" <<'PY'
import json, os, platform, subprocess, sys, time
w, model, out, cmd_ours, cmd_torch = sys.argv[1:6]
ours = json.load(open(f"{w}/ours.json"))
torch_ = json.load(open(f"{w}/torch.json"))
def preds(p):
    return {os.path.basename(l.split("\t")[0]): tuple(map(int, l.rstrip("\n").split("\t")[1:]))
            for l in open(p)}
po, pt = preds(f"{w}/ours.tsv"), preds(f"{w}/torch.tsv")
common = sorted(set(po) & set(pt))
agree = sum(po[k][1] == pt[k][1] for k in common)
disagree = [k for k in common if po[k][1] != pt[k][1]]
cfg = json.load(open(os.path.join(model, "config.json")))
tr = cfg.get("vitd_training", {})
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
t1o, t1t = 100 * ours["top1"], 100 * torch_["top1"]
lines = [
    "# Fashion-MNIST test accuracy: vitd vs PyTorch on the same PNG files",
    "",
    f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {rev}",
    f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
    f"- model: `{model}` ({cfg.get('hidden_size')} wide, {cfg.get('num_hidden_layers')} layers, "
    f"{cfg.get('num_attention_heads')} heads, patch {cfg.get('patch_size')} at {cfg.get('image_size')}px); "
    f"training: {tr.get('epochs_done', '?')} of {tr.get('epochs', '?')} epochs (step {tr.get('step', '?')})",
    f"- data: the {ours['images']} Fashion-MNIST TEST images (Debian dataset-fashion-mnist) written as 8-bit gray "
    "PNGs by `models/fashion-vit/export_pngs.py`",
    "- command: `bench/fashion_accuracy.sh`, which runs",
    f"  - ours: `{cmd_ours}`",
    f"  - PyTorch: `{cmd_torch}`",
    "",
    "| | top-1 | top-5 | images | images/s (decode+preprocess+forward) |",
    "|---|---|---|---|---|",
    f"| vitd (`vit eval`: our decoder, preprocessing, CPU engine) | **{t1o:.2f}%** ({ours['top1_correct']}) | "
    f"{100 * ours['top5']:.2f}% | {ours['images']} | {ours['images_per_s']:.0f} |",
    f"| PyTorch {torch_['torch']} (PIL + torchvision + models/vit_torch.py) | **{t1t:.2f}%** ({torch_['top1_correct']}) | "
    f"{100 * torch_['top5']:.2f}% | {torch_['images']} | {torch_['images_per_s']:.0f} |",
    "",
    f"Difference (vitd − PyTorch): **{t1o - t1t:+.2f} points** of top-1. Per image, the two agree on the "
    f"predicted class for {agree} of {len(common)} images"
    + (f"; they differ on {', '.join(disagree[:10])}{' ...' if len(disagree) > 10 else ''}." if disagree else "."),
    "",
    "Throughput here is incidental (shared machine, other jobs running); see the CPU and server benchmarks for speed.",
    "",
    "Per class:",
    "",
    "| class | label | images | top-1 vitd | top-1 PyTorch |",
    "|---|---|---|---|---|",
]
tpc = {c["index"]: c for c in torch_["per_class"]}
for c in ours["per_class"]:
    t = tpc.get(c["index"], {})
    lines.append(f"| {c['index']} | {c['label']} | {c['images']} | {100 * c['top1']:.1f}% | "
                 f"{100 * t.get('top1_correct', 0) / max(1, t.get('images', 0)):.1f}% |")
if "confusion" in ours:
    lines += ["", "Confusion matrix (vitd; rows: true class, columns: predicted):", "", "```"]
    lines.append("     " + "".join(f"{c:6d}" for c in range(len(ours["confusion"]))))
    for r, row in enumerate(ours["confusion"]):
        lines.append(f"{r:5d}" + "".join(f"{v:6d}" for v in row))
    lines.append("```")
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
open(out, "w").write("\n".join(lines) + "\n")
print(f"\nwrote {out}: vitd {t1o:.2f}%, PyTorch {t1t:.2f}%, difference {t1o - t1t:+.2f} points, "
      f"agreement {agree}/{len(common)}")
PY
