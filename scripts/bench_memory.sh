#!/usr/bin/env bash
# scripts/bench_memory.sh: peak memory of `docclass classify` as the archive grows.
# Generates archives under .cache/bench-memory (small letters, one file each: 1,000,
# 10,000 and 100,000 files; long decisions of ~40 KB: 200 and 2,000 files), classifies
# each with /usr/bin/time -v and appends one JSON line per run to bench/memory.jsonl:
# model, archive, documents, seconds, peak RSS. MODELS (space-separated) picks the models;
# SIZES_SMALL / SIZES_LONG the archive sizes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DOCCLASS=target/release/docclass
WORK=.cache/bench-memory
MODELS=${MODELS:-tests/fixtures/parity/bert-tokcls}
SIZES_SMALL=${SIZES_SMALL:-"1000 10000 100000"}
SIZES_LONG=${SIZES_LONG:-"200 2000"}
mkdir -p "$WORK" bench

# Archives: N files in folders of 1,000, text drawn from a fixed word list (seeded).
make_archive() { # KIND N
  local dir="$WORK/$1-$2"
  [ -f "$dir/.complete" ] && return
  rm -rf "$dir"
  python3 - "$1" "$2" "$dir" <<'PY'
import os, random, sys
kind, n, root = sys.argv[1], int(sys.argv[2]), sys.argv[3]
words = ("Antrag Bescheid Kläger Gericht München Köln Asyl Aufenthalt Frau Müller Herr Schmidt Straße "
         "Urteil Beschluss Behörde Widerspruch Duldung Einbürgerung Verwaltungsgericht gemäß § 60 AufenthG").split()
rng = random.Random(42)
for i in range(n):
    folder = os.path.join(root, f"{i // 1000:04d}")
    os.makedirs(folder, exist_ok=True)
    count = 40 if kind == "small" else 6000
    text = " ".join(rng.choice(words) for _ in range(count))
    with open(os.path.join(folder, f"doc-{i:06d}.txt"), "w", encoding="utf-8") as f:
        f.write(text + "\n")
open(os.path.join(root, ".complete"), "w").close()
PY
}

run() { # MODEL KIND N
  local model=$1 kind=$2 n=$3 log out
  make_archive "$kind" "$n"
  out="$WORK/out.jsonl"; log="$WORK/time.log"
  /usr/bin/time -v "$DOCCLASS" classify --model "$model" "$WORK/$kind-$n" --out "$out" --force --quiet 2> "$log" || true
  python3 - "$model" "$kind" "$n" "$log" "$out" <<'PY' | tee -a bench/memory.jsonl
import json, re, sys, os, platform
model, kind, n, log, out = sys.argv[1:]
text = open(log).read()
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
parts = [float(p) for p in wall.split(":")]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
records = sum(1 for _ in open(out)) if os.path.exists(out) else 0
print(json.dumps({"bench": "classify-memory", "model": model, "archive": kind, "documents": int(n),
                  "records": records, "seconds": round(seconds, 1), "peak_rss_mb": round(rss / 1024, 1),
                  "cores": os.cpu_count(), "machine": platform.machine()}))
PY
}

for model in $MODELS; do
  for n in $SIZES_SMALL; do run "$model" small "$n"; done
  for n in $SIZES_LONG; do run "$model" long "$n"; done
done
