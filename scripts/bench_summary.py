#!/usr/bin/env python3
"""bench_summary.py RUNS.jsonl [RUN_ID]: median tokens/s per system and corpus of one run
(default: the latest), and each docclass precision's ratio to each anchor, as a Markdown
table."""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
run = sys.argv[2] if len(sys.argv) > 2 else rows[-1]["run"]
rows = [r for r in rows if r.get("run") == run]


def system(r):
    """docclass lines are told apart by precision and int8 kernel (older lines: f32)."""
    if r["system"] != "docclass":
        return r["system"]
    precision = r.get("precision") or "f32"
    kernel = r.get("int8_kernel")
    return f"docclass {precision}" + (f" ({kernel})" if kernel else "")


anchors = ["torch", "ort", "ort-int8"]
ours = sorted({system(r) for r in rows if r["system"] == "docclass"})
corpora = sorted({r["corpus"].rsplit("/", 1)[-1] for r in rows}, reverse=True)
med = {}
for r in rows:
    med.setdefault((system(r), r["corpus"].rsplit("/", 1)[-1]), []).append(r)
rounds = len({r.get("round") for r in rows})
print(f"run {run} on {rows[0]['machine']}, {rounds} rounds, median tokens/s (docs/s; peak RSS MB)")
if rows[0].get("isa"):
    print(f"CPU flags: {rows[0]['isa']}")
print()
print("| system | " + " | ".join(corpora) + " |")
print("| --- |" + " --- |" * len(corpora))


def median_tps(key, corpus):
    rs = med.get((key, corpus))
    return statistics.median(r["tok_per_s"] for r in rs) if rs else None


for s in ours + anchors:
    cells = []
    for c in corpora:
        rs = med.get((s, c), [])
        if not rs:
            cells.append("–")
            continue
        dps = statistics.median(r["docs_per_s"] for r in rs)
        rss = max(r["maxrss_mb"] for r in rs)
        cells.append(f"{median_tps(s, c):,.0f} ({dps:.1f}; {rss:,.0f})")
    print(f"| {s} | " + " | ".join(cells) + " |")
for s in ours:
    for anchor in anchors:
        cells = []
        for c in corpora:
            d, a = median_tps(s, c), median_tps(anchor, c)
            cells.append(f"{d / a:.2f}×" if d and a else "–")
        print(f"| {s} / {anchor} | " + " | ".join(cells) + " |")
