#!/usr/bin/env bash
# scripts/bench_serve.sh [FLAGS for bench_serve.py]: load on `docclass serve` from a
# bounded asyncio client (aiohttp, pip-installed into .cache/serve-bench-venv once) next
# to `classify` on the same documents; appends to bench/serve.jsonl and prints a table.
# Needs scripts/setup.sh first. About 5 minutes with the defaults.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
[ -x target/release/docclass ] && [ -f datasets/ler_court_cls/test.tsv ] || { echo "bench_serve: run scripts/setup.sh first" >&2; exit 1; }
VENV=.cache/serve-bench-venv
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "aiohttp==3.13.2"
fi
"$VENV/bin/python" scripts/bench_serve.py "$@"
