#!/usr/bin/env python3
"""bench_summary.py RUNS.jsonl [RUN_ID]: median tokens/s per system and corpus of one run
(default: the latest), and docclass's ratio to each anchor, as a Markdown table."""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
run = sys.argv[2] if len(sys.argv) > 2 else rows[-1]["run"]
rows = [r for r in rows if r.get("run") == run]
systems = ["docclass", "torch", "ort", "ort-int8"]
corpora = sorted({r["corpus"].rsplit("/", 1)[-1] for r in rows}, reverse=True)
med = {}
for r in rows:
    med.setdefault((r["system"], r["corpus"].rsplit("/", 1)[-1]), []).append(r)
print(f"run {run} on {rows[0]['machine']}, {len(rows) // max(1, len(systems) * len(corpora))} rounds, median tokens/s (docs/s; peak RSS MB)\n")
print("| system | " + " | ".join(corpora) + " |")
print("| --- |" + " --- |" * len(corpora))
for s in systems:
    cells = []
    for c in corpora:
        rs = med.get((s, c), [])
        if not rs:
            cells.append("–")
            continue
        tps = statistics.median(r["tok_per_s"] for r in rs)
        dps = statistics.median(r["docs_per_s"] for r in rs)
        rss = max(r["maxrss_mb"] for r in rs)
        cells.append(f"{tps:,.0f} ({dps:.1f}; {rss:,.0f})")
    print(f"| {s} | " + " | ".join(cells) + " |")
for anchor in systems[1:]:
    cells = []
    for c in corpora:
        d, a = med.get(("docclass", c)), med.get((anchor, c))
        if d and a:
            cells.append(f"{statistics.median(r['tok_per_s'] for r in d) / statistics.median(r['tok_per_s'] for r in a):.2f}×")
        else:
            cells.append("–")
    print(f"| docclass / {anchor} | " + " | ".join(cells) + " |")
