#!/usr/bin/env bash
# cpu_ab.sh: two builds of `vit` (e.g. a base commit and a branch) timed by `vit bench` in turns,
# R rounds, so both see the same background load; one line per run:
#   round=R side=base|branch model=NAME batch=B iters=K images_per_s=X
#   bench/cpu_ab.sh BASE_VIT BRANCH_VIT ROUNDS "NAME:DIR:BATCH:ITERS:WARMUP" ...
# e.g. (bench/results/refactor_cpu_bench.md, run B):
#   bench/cpu_ab.sh /tmp/base/build/vit build/vit 10 fashion:models/fashion-vit:1:100:2 fashion:models/fashion-vit:8:25:2
set -u
[ $# -ge 4 ] || { sed -n '2,7p' "$0" >&2; exit 2; }
BASE=$1 BRANCH=$2 R=$3
shift 3
for r in $(seq "$R"); do
  for side in base branch; do
    [ "$side" = base ] && V=$BASE || V=$BRANCH
    for spec in "$@"; do
      IFS=: read -r name dir b k w <<<"$spec"
      ips=$("$V" bench --model "$dir" --batch "$b" --iters "$k" --warmup "$w" --threads 2 | head -1 | awk '{print $1}')
      echo "round=$r side=$side model=$name batch=$b iters=$k images_per_s=$ips"
    done
  done
done
