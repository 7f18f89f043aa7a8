#!/usr/bin/env bash
# scripts/bench_anchors.sh [ROUNDS]: docclass next to PyTorch and ONNX Runtime (fp32, int8)
# on the same encoder, corpora and machine, interleaved (A B C D, A B C D, …) because the
# machine is shared. Appends one JSON line per measurement to bench/runs.jsonl and prints
# the medians and ratios (scripts/bench_summary.py).
# Needs scripts/setup.sh first. The anchors' venv and ONNX export (~10 min, ~6 GB, once)
# go to $ANCHORS_WORK (default bench/work, git-ignored).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${1:-3}
WORK=${ANCHORS_WORK:-$ROOT/bench/work}
ANCHORS="$ROOT/../shared/anchors"
OUT="$ROOT/bench/runs.jsonl"
[ -d "$ANCHORS" ] || { echo "bench: $ANCHORS not found" >&2; exit 1; }
[ -f models/multilingual-e5-small/model.safetensors ] || { echo "bench: run scripts/setup.sh first" >&2; exit 1; }
[ -s "$WORK/onnx/model_int8.onnx" ] || "$ANCHORS/setup.sh" models/multilingual-e5-small "$WORK"
[ -s "$WORK/corpus/passages_sub.txt" ] || python3 "$ANCHORS/make_corpus.py" datasets "$WORK/corpus"
cargo build --release --quiet
run_id=$(date -u +%Y-%m-%dT%H:%M:%SZ)
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
tag() { python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); r.update(run=sys.argv[1], round=int(sys.argv[2]), machine=sys.argv[3]); print(json.dumps(r))' "$run_id" "$1" "$machine"; }
for round in $(seq 1 "$ROUNDS"); do
  for corpus in sentences_sub passages_sub; do
    target/release/docclass bench "$WORK/corpus/$corpus.txt" --threads 2 | tag "$round" >> "$OUT"
    for system in torch ort ort-int8; do
      "$WORK/venv/bin/python" "$ANCHORS/bench.py" --system "$system" --model "$WORK/hf" --onnx-dir "$WORK/onnx" \
        --corpus "$WORK/corpus/$corpus.txt" --mode sorted 2>/dev/null | tail -n 1 | tag "$round" >> "$OUT"
    done
    echo "bench: round $round, $corpus done" >&2
  done
done
python3 scripts/bench_summary.py "$OUT" "$run_id"
