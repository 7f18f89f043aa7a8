#!/usr/bin/env bash
# scripts/bench_anchors.sh [ROUNDS]: docclass (f32, int8) next to PyTorch and ONNX Runtime (fp32, int8)
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
# docclass precisions to run; `int8:avx2` runs the int8 precision with the AVX2 kernel
# (DOCCLASS_INT8_KERNEL=avx2), which measures that kernel on an AVX-512 machine.
PRECISIONS=${PRECISIONS:-f32 int8}
[ -d "$ANCHORS" ] || { echo "bench: $ANCHORS not found" >&2; exit 1; }
[ -f models/multilingual-e5-small/model.safetensors ] || { echo "bench: run scripts/setup.sh first" >&2; exit 1; }
[ -s "$WORK/onnx/model_int8.onnx" ] || "$ANCHORS/setup.sh" models/multilingual-e5-small "$WORK"
[ -s "$WORK/corpus/passages_sub.txt" ] || python3 "$ANCHORS/make_corpus.py" datasets "$WORK/corpus"
cargo build --release --quiet
run_id=$(date -u +%Y-%m-%dT%H:%M:%SZ)
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
# The vector extensions the kernels choose between, as /proc/cpuinfo names them.
isa=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -xE 'avx2|fma|avx512f|avx512bw|avx512_vnni|avx512_bf16|avx_vnni|amx_int8|amx_bf16' | tr '\n' ' ' | sed 's/ $//')
tag() { python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); r.update(run=sys.argv[1], round=int(sys.argv[2]), machine=sys.argv[3], isa=sys.argv[4]); print(json.dumps(r))' "$run_id" "$1" "$machine" "$isa"; }
for round in $(seq 1 "$ROUNDS"); do
  for corpus in sentences_sub passages_sub; do
    for spec in $PRECISIONS; do
      kernel=; [[ $spec == *:* ]] && kernel=${spec#*:}
      DOCCLASS_INT8_KERNEL=$kernel target/release/docclass bench "$WORK/corpus/$corpus.txt" --threads 2 \
        --precision "${spec%%:*}" | tag "$round" >> "$OUT"
    done
    for system in torch ort ort-int8; do
      "$WORK/venv/bin/python" "$ANCHORS/bench.py" --system "$system" --model "$WORK/hf" --onnx-dir "$WORK/onnx" \
        --corpus "$WORK/corpus/$corpus.txt" --mode sorted 2>/dev/null | tail -n 1 | tag "$round" >> "$OUT"
    done
    echo "bench: round $round, $corpus done" >&2
  done
done
python3 scripts/bench_summary.py "$OUT" "$run_id"
