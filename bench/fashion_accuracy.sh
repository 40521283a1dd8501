#!/usr/bin/env bash
# fashion_accuracy.sh: top-1 accuracy of a Fashion-MNIST model directory (default: the shipped
# models/fashion-vit) on the 10,000 TEST images written as PNG files, measured two ways on the
# same files in one run:
#   ours:    build/vit eval (our PNG decoder, preprocessing and CPU engine)
#   PyTorch: models/fashion-vit/eval_torch.py (PIL + torchvision transforms as
#            preprocessor_config.json says + models/vit_torch.py on the same model.safetensors)
# and the per-image agreement of the two; then ours again at `--precision int8` (W8A8 dynamic
# quantization of the encoder Linears, engine/cpu/cpu_gemm_i8.c): its accuracy and its per-image
# agreement with our fp32, next to PyTorch's dynamic quantization (eval_torch.py --int8:
# quantize_dynamic of every nn.Linear, qint8) and its agreement with PyTorch fp32.
# Writes bench/results/fashion_accuracy.md.
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
CMD_INT8="$CMD_OURS --precision int8"
echo "+ $CMD_INT8" >&2
"$VIT" eval --model "$MODEL" --data "$PNG" --batch "$BATCH" --threads "$THREADS" "${lim[@]}" \
  --precision int8 --predictions "$W/int8.tsv" --json > "$W/int8.json"
echo "+ $CMD_TORCH" >&2
OMP_WAIT_POLICY=PASSIVE $PY models/fashion-vit/eval_torch.py --model "$MODEL" --data "$PNG" \
  --batch "$BATCH" --threads "$THREADS" "${lim[@]}" --json "$W/torch.json" \
  --predictions "$W/torch.tsv" > "$W/torch.txt"
cat "$W/torch.txt"
CMD_TORCH8="$CMD_TORCH --int8"
echo "+ $CMD_TORCH8" >&2
OMP_WAIT_POLICY=PASSIVE $PY models/fashion-vit/eval_torch.py --model "$MODEL" --data "$PNG" \
  --batch "$BATCH" --threads "$THREADS" "${lim[@]}" --json "$W/torch8.json" \
  --predictions "$W/torch8.tsv" --int8 > "$W/torch8.txt"

$PY - "$W" "$MODEL" "$OUT" "$CMD_OURS" "$CMD_TORCH" "$CMD_INT8" "$CMD_TORCH8" <<'PY'
import json, os, platform, subprocess, sys, time
w, model, out, cmd_ours, cmd_torch, cmd_int8, cmd_torch8 = sys.argv[1:8]
torch8 = json.load(open(f"{w}/torch8.json"))
ours = json.load(open(f"{w}/ours.json"))
int8 = json.load(open(f"{w}/int8.json"))
torch_ = json.load(open(f"{w}/torch.json"))
def preds(p):
    return {os.path.basename(l.split("\t")[0]): tuple(map(int, l.rstrip("\n").split("\t")[1:]))
            for l in open(p)}
po, pt, p8 = preds(f"{w}/ours.tsv"), preds(f"{w}/torch.tsv"), preds(f"{w}/int8.tsv")
common8 = sorted(set(po) & set(p8))
agree8 = sum(po[k][1] == p8[k][1] for k in common8)
t1i = 100 * int8["top1"]
pt8 = preds(f"{w}/torch8.tsv")
commont8 = sorted(set(pt) & set(pt8))
agreet8 = sum(pt[k][1] == pt8[k][1] for k in commont8)
t1t8 = 100 * torch8["top1"]
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
    f"  - ours, int8: `{cmd_int8}`",
    f"  - PyTorch, int8: `{cmd_torch8}`",
    "",
    "| | top-1 | top-5 | images | images/s (decode+preprocess+forward) |",
    "|---|---|---|---|---|",
    f"| vitd (`vit eval`: our decoder, preprocessing, CPU engine) | **{t1o:.2f}%** ({ours['top1_correct']}) | "
    f"{100 * ours['top5']:.2f}% | {ours['images']} | {ours['images_per_s']:.0f} |",
    f"| PyTorch {torch_['torch']} (PIL + torchvision + models/vit_torch.py) | **{t1t:.2f}%** ({torch_['top1_correct']}) | "
    f"{100 * torch_['top5']:.2f}% | {torch_['images']} | {torch_['images_per_s']:.0f} |",
    f"| vitd `--precision int8` (W8A8 encoder Linears) | **{t1i:.2f}%** ({int8['top1_correct']}) | "
    f"{100 * int8['top5']:.2f}% | {int8['images']} | {int8['images_per_s']:.0f} |",
    f"| PyTorch `quantize_dynamic` (every nn.Linear to qint8) | **{t1t8:.2f}%** ({torch8['top1_correct']}) | "
    f"{100 * torch8['top5']:.2f}% | {torch8['images']} | {torch8['images_per_s']:.0f} |",
    "",
    f"INT8 vs FP32 (both vitd): **{t1i - t1o:+.2f} points** of top-1; the predicted class is the same for "
    f"{agree8} of {len(common8)} images ({100 * agree8 / max(1, len(common8)):.2f}%). "
    f"PyTorch's INT8 vs its FP32: **{t1t8 - t1t:+.2f} points**, same class for {agreet8} of {len(commont8)} "
    f"images ({100 * agreet8 / max(1, len(commont8)):.2f}%).",
    "",
    f"Difference (vitd − PyTorch): **{t1o - t1t:+.2f} points** of top-1. Per image, the two agree on the "
    f"predicted class for {agree} of {len(common)} images"
    + (f"; they differ on {', '.join(disagree[:10])}{' ...' if len(disagree) > 10 else ''}." if disagree else "."),
    "",
    "Throughput here is incidental (shared machine, other jobs running); see the CPU and server benchmarks for speed.",
    "",
    "Per class:",
    "",
    "| class | label | images | top-1 vitd | top-1 PyTorch | top-1 vitd int8 |",
    "|---|---|---|---|---|---|",
]
tpc = {c["index"]: c for c in torch_["per_class"]}
ipc = {c["index"]: c for c in int8["per_class"]}
for c in ours["per_class"]:
    t = tpc.get(c["index"], {})
    lines.append(f"| {c['index']} | {c['label']} | {c['images']} | {100 * c['top1']:.1f}% | "
                 f"{100 * t.get('top1_correct', 0) / max(1, t.get('images', 0)):.1f}% | "
                 f"{100 * ipc.get(c['index'], {}).get('top1', 0):.1f}% |")
if "confusion" in ours:
    lines += ["", "Confusion matrix (vitd; rows: true class, columns: predicted):", "", "```"]
    lines.append("     " + "".join(f"{c:6d}" for c in range(len(ours["confusion"]))))
    for r, row in enumerate(ours["confusion"]):
        lines.append(f"{r:5d}" + "".join(f"{v:6d}" for v in row))
    lines.append("```")
os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
open(out, "w").write("\n".join(lines) + "\n")
print(f"\nwrote {out}: vitd {t1o:.2f}%, PyTorch {t1t:.2f}%, difference {t1o - t1t:+.2f} points, "
      f"agreement {agree}/{len(common)}; int8 {t1i:.2f}%, agreement with fp32 {agree8}/{len(common8)}; "
      f"PyTorch int8 {t1t8:.2f}%, agreement with PyTorch fp32 {agreet8}/{len(commont8)}")
PY
