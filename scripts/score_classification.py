#!/usr/bin/env python3
"""score_classification.py RESULTS.jsonl GOLD.tsv: accuracy, per-class and macro F1 of
docclass classify results against a `label<TAB>text` file (standard library only).
Records and gold rows are matched by the record's source line. Prints JSON."""
import json
import sys

results, gold_path = sys.argv[1], sys.argv[2]
gold = {}
with open(gold_path, encoding="utf-8") as f:
    for line_no, line in enumerate(f, 1):
        if line_no > 1:
            gold[line_no] = line.split("\t", 1)[0]
pairs = []
with open(results, encoding="utf-8") as f:
    for line in f:
        r = json.loads(line)
        if "error" in r:
            sys.exit(f"record {r['id']} has an error: {r['error']}")
        pairs.append((gold[r["source"]["line"]], r["label"]))
if len(pairs) != len(gold):
    sys.exit(f"{len(pairs)} records for {len(gold)} gold rows")
labels = sorted(set(g for g, _ in pairs))
per_class = {}
for label in labels:
    tp = sum(1 for g, p in pairs if g == label and p == label)
    fp = sum(1 for g, p in pairs if g != label and p == label)
    fn = sum(1 for g, p in pairs if g == label and p != label)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    per_class[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4), "support": tp + fn}
report = {
    "documents": len(pairs),
    "accuracy": round(sum(g == p for g, p in pairs) / len(pairs), 4),
    "macro_f1": round(sum(c["f1"] for c in per_class.values()) / len(labels), 4),
    "per_class": per_class,
}
print(json.dumps(report, indent=2))
