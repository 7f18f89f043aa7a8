#!/usr/bin/env bash
# scripts/bench_report.sh: time and peak memory of `docclass report` and `docclass drift`
# (weeks, against the default pipeline's training profiles) on generated
# results files of 100,000 and 1,000,000 records: 50 labels with a long-tailed
# frequency, two entities of five types per record from long-tailed name lists, one
# failure in 997, sources in 50 files (five of them present, with modification dates
# in three months). Three runs each; prints the median seconds and the peak RSS.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DOCCLASS=target/release/docclass
WORK=.cache/bench-report
mkdir -p "$WORK"
python3 - "$WORK" <<'PY'
import json, os, random, sys
work = sys.argv[1]
labels = [f"label-{i:02d}" for i in range(50)]
types = ["PER", "ORG", "LOC", "NRM", "RS"]
def records(n, path):
    if os.path.exists(path):
        return
    rng = random.Random(1)
    with open(path + ".tmp", "w") as f:
        for i in range(n):
            source = {"path": f"{work}/inbox-{i // 20000}.jsonl", "line": i % 20000 + 1}
            if i % 997 == 0:
                r = {"id": f"d{i}", "source": source, "model": "m", "error": "empty document (no text)"}
            else:
                label, score = labels[int(rng.paretovariate(1.2)) % 50], rng.random()
                entities = [{"text": f"{t} {int(rng.paretovariate(1.1))}", "label": t, "start": 0, "end": 5, "score": 0.9}
                            for t in rng.sample(types, 2)]
                r = {"id": f"d{i}", "source": source, "label": label, "score": score,
                     "scores": [{"label": label, "score": score}], "entities": entities, "windows": 1, "model": "m"}
            f.write(json.dumps(r) + "\n")
    os.rename(path + ".tmp", path)
records(100_000, f"{work}/results-100k.jsonl")
records(1_000_000, f"{work}/results-1m.jsonl")
for i, month in enumerate(["2026-10-15", "2026-10-15", "2026-11-15", "2026-12-01", "2026-12-01"]):
    path = f"{work}/inbox-{i}.jsonl"
    open(path, "w").write("{}\n")
    t = __import__("datetime").datetime.fromisoformat(month).timestamp()
    os.utime(path, (t, t))
PY
for size in 100k 1m; do
  runs=()
  for _ in 1 2 3; do
    runs+=("$( { /usr/bin/time -f "%e %M" "$DOCCLASS" report "$WORK/results-$size.jsonl" --out "$WORK/overview-$size.html" --force --log-format json >/dev/null; } 2>&1 | tail -n 1)")
  done
  printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p | awk -v size="$size" '{printf "report %s records: median %.2f s, peak RSS %.1f MB\n", size, $1, $2 / 1024}'
done
for size in 100k 1m; do
  runs=()
  for _ in 1 2 3; do
    runs+=("$( { /usr/bin/time -f "%e %M" "$DOCCLASS" drift "$WORK/results-$size.jsonl" --period week --out "$WORK/drift-$size" --force --log-format json >/dev/null; } 2>&1 | tail -n 1)")
  done
  printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p | awk -v size="$size" '{printf "drift %s records: median %.2f s, peak RSS %.1f MB\n", size, $1, $2 / 1024}'
done
