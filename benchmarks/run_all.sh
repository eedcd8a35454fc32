#!/usr/bin/env bash
# Rerun every benchmark behind docs/benchmarks.md, then rebuild that page.
#   bash benchmarks/run_all.sh [DATA_DIR] [USRNET_WEIGHTS]
#   REF=<commit> bash benchmarks/run_all.sh   # also compare every accuracy figure with that commit's reports
# About an hour on 2 CPU cores. Timings are only comparable within one report.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data/div2krk}
WEIGHTS=${2:-../shared/weights/usrnet_tiny.pth}
PY=${PYTHON:-.venv/bin/python}
CACHE=$(mktemp -d)
trap 'rm -rf "$CACHE"' EXIT

for s in 2 4; do
  speed=$([ "$s" = 2 ] && echo 20 || echo 0)
  $PY benchmarks/kernel_benchmark.py --data "$DATA" --scale $s --presets default,edges:default \
      --workers 1 --threads 2 --speed-steps "$speed" --out docs/benchmarks_kernel_x$s.md
done
$PY benchmarks/kernel_benchmark.py --data "$DATA" --scale 2 --presets paper --limit 8 \
    --workers 1 --threads 2 --speed-steps 0 --out docs/benchmarks_kernel_paper_x2.md
for s in 2 4; do
  $PY benchmarks/sr_benchmark.py --data "$DATA" --scale $s --methods bicubic,closed-form \
      --kernels gt,estimated,constant --threads 2 --kernel-cache "$CACHE" --out docs/benchmarks_sr_x$s.md
  $PY benchmarks/sr_benchmark.py --data "$DATA" --scale $s --methods bicubic,closed-form \
      --kernels estimated,constant --set closed-form:sigma=2 --threads 2 --kernel-cache "$CACHE" \
      --out docs/benchmarks_sr_x${s}_blind.md
done
$PY benchmarks/sr_benchmark.py --data "$DATA" --scale 2 --methods bicubic,usrnet,zssr --kernels gt,estimated \
    --ids 2,13,27 --threads 2 --kernel-cache "$CACHE" --usrnet-weights "$WEIGHTS" \
    --out docs/benchmarks_sr_neural_x2.md
$PY benchmarks/threads_benchmark.py --busy 1 --out docs/benchmarks_threads.md
if command -v xvfb-run >/dev/null 2>&1; then
  xvfb-run -a -s "-screen 0 1600x1000x24" $PY benchmarks/activity_benchmark.py --out docs/benchmarks_activity.md
fi
# With REF set (a commit), check that every accuracy figure matches that commit's reports.
if [ -n "${REF:-}" ]; then
  $PY benchmarks/compare_reports.py --ref "$REF" --out docs/benchmarks_reproduction.md
fi
$PY benchmarks/make_index.py
