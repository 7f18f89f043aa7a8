#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS]: runs every fuzz target in fuzz/ for SECONDS each (default
# 300) with cargo-fuzz (installed with `cargo install cargo-fuzz` when missing; the
# stable toolchain is told to accept the sanitizer flags with RUSTC_BOOTSTRAP=1).
# Seeds come from fuzz/seeds.py; crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SECONDS_EACH=${1:-300}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
python3 fuzz/seeds.py fuzz/corpus
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for target in decode extract rows predictions; do
  echo "fuzz: $target for $SECONDS_EACH s" >&2
  # -rss_limit_mb: a ZIP bomb or runaway parser must stay within 2 GB.
  cargo fuzz run -O "$target" fuzz/corpus/"$target" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
    -timeout=10 2>&1 | tail -n 3
done
