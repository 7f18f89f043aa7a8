#!/usr/bin/env python3
"""scripts/drift_check.py WORK OUT.json: how good `docclass drift` is, measured.

Run by scripts/drift_check.sh, which trains the heads first. Each labelled set is
classified once (records in WORK); drift then reads results files, and its estimated
accuracy and macro-F1 are compared with the real ones computed from the gold labels:

- in distribution: ler_court_cls test (the committed area-of-law head, trained on train +
  dev), GermEval 2018's held-out fifth (coarse head), and the five held-out folds of the
  book blurbs (a head trained on the other four folds each; every fifth blurb of each
  genre held out);
- label shift: 1,000 test passages drawn (with replacement) so that one court's share
  moves by -10, +10 or +20 points, the others in proportion, for each court and 3 seeds;
  the same draws without a shift measure false alarms;
- covariate shift: the test passages cut to their first 12 words;
- out of domain: GermEval tweets fed to the area-of-law head (no real accuracy: detection
  only).

Writes OUT.json with every run and a summary; prints the summary.
"""
import csv
import json
import random
import statistics
import subprocess
import sys
from pathlib import Path

DOCCLASS = "target/release/docclass"
DATE = "2026-12-01"


def read_tsv(path, text_column, label_column, header):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if header:
        names = rows[0]
        rows = rows[1:]
        text_column, label_column = names.index(text_column), names.index(label_column)
    return [(r[text_column], r[label_column]) for r in rows if len(r) > max(text_column, label_column)]


def write_intake(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for i, text in enumerate(texts):
            f.write(json.dumps({"id": str(i), "text": text, "received": DATE}, ensure_ascii=False) + "\n")


def classify(model, intake, results):
    if not results.exists():
        subprocess.run([DOCCLASS, "classify", "--model", model, str(intake), "--out", str(results), "--quiet",
                        "--date-field", "received"], check=True)
    records = [json.loads(line) for line in open(results, encoding="utf-8")]
    return sorted(records, key=lambda r: int(r["id"]))


def drift(model, records, work, name, extra=()):
    path = work / f"{name}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    out = work / f"drift-{name}"
    run = subprocess.run([DOCCLASS, "drift", str(path), "--model", model, "--out", str(out), "--force",
                          "--date-field", "received", "--fail-on-drift", *extra], capture_output=True, text=True)
    if run.returncode not in (0, 5):
        sys.exit(f"drift failed on {name}: {run.stderr}")
    report = json.load(open(out / "drift.json"))
    period = report["periods"][0]
    return report, period, run.returncode == 5


def actual(records, gold, labels):
    predicted = [r.get("label") for r in records]
    right = sum(p == g for p, g in zip(predicted, gold))
    f1s = []
    for label in labels:
        tp = sum(p == label and g == label for p, g in zip(predicted, gold))
        fp = sum(p == label and g != label for p, g in zip(predicted, gold))
        fn = sum(p != label and g == label for p, g in zip(predicted, gold))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return right / len(gold), sum(f1s) / len(labels)


def main():
    work, out = Path(sys.argv[1]), Path(sys.argv[2])
    work.mkdir(parents=True, exist_ok=True)
    area_of_law, tweets_head = "models/area-of-law", ".cache/heads/germeval2018-coarse"
    test = read_tsv("datasets/ler_court_cls/test.tsv", "text", "label", True)
    tweets = read_tsv(".cache/germeval2018/test.tsv", 0, 1, False)
    courts = sorted({label for _, label in test})
    for name, rows in [("ler-test", test), ("tweets", tweets)]:
        write_intake(work / f"{name}.input.jsonl", [t for t, _ in rows])
    write_intake(work / "ler-test-short.input.jsonl", [" ".join(t.split()[:12]) for t, _ in test])

    runs = []

    def measured(kind, name, model, records, gold, labels, extra=()):
        report, period, flagged = drift(model, records, work, name, extra)
        estimate = period.get("estimate") or {}
        row = {"kind": kind, "name": name, "documents": len(records), "flagged": flagged,
               "alerts": [a["check"] for a in period["alerts"]]}
        if gold is not None:
            accuracy, macro_f1 = actual(records, gold, labels)
            row.update({
                "accuracy": accuracy, "estimated_accuracy": estimate.get("accuracy"),
                "accuracy_interval": [estimate.get("accuracy_low"), estimate.get("accuracy_high")],
                "macro_f1": macro_f1, "estimated_macro_f1": estimate.get("macro_f1"),
            })
        else:
            row["estimated_accuracy"] = estimate.get("accuracy")
        runs.append(row)
        return row

    test_records = classify(area_of_law, work / "ler-test.input.jsonl", work / "ler-test.results.jsonl")
    test_gold = [label for _, label in test]
    measured("in distribution", "ler_court_cls test", area_of_law, test_records, test_gold, courts)
    tweet_records = classify(tweets_head, work / "tweets.input.jsonl", work / "tweets.results.jsonl")
    measured("in distribution", "GermEval 2018 held-out fifth (coarse)", tweets_head, tweet_records,
             [label for _, label in tweets], ["OFFENSE", "OTHER"])
    short_records = classify(area_of_law, work / "ler-test-short.input.jsonl", work / "ler-test-short.results.jsonl")
    measured("covariate shift", "ler_court_cls test, first 12 words", area_of_law, short_records, test_gold, courts)
    ood_records = classify(area_of_law, work / "tweets.input.jsonl", work / "tweets-area-of-law.results.jsonl")
    measured("out of domain", "GermEval tweets to the area-of-law head", area_of_law, ood_records, None, courts)

    # Book blurbs: five folds, each held out from a head trained on the other four.
    blurbs = read_tsv("datasets/germeval2019_blurbs/blurbs.tsv", "text", "label", True)
    genres = sorted({label for _, label in blurbs})
    seen = {}
    fold_of = []
    for _, label in blurbs:
        fold_of.append(seen.get(label, 0) % 5)
        seen[label] = seen.get(label, 0) + 1
    for fold in range(5):
        head = f".cache/heads/blurbs-fold{fold + 1}"
        train_file = work / f"blurbs-fold{fold + 1}.train.tsv"
        held = [row for row, f in zip(blurbs, fold_of) if f == fold]
        if not (Path(head) / "head.json").exists() or '"profile"' not in (Path(head) / "head.json").read_text():
            with open(train_file, "w", encoding="utf-8") as f:
                f.write("label\ttext\n")
                for (text, label), g in zip(blurbs, fold_of):
                    if g != fold:
                        f.write(f"{label}\t{text}\n")
            subprocess.run([DOCCLASS, "train", str(train_file), "--out", head, "--force"], check=True)
        name = f"blurbs-fold{fold + 1}"
        write_intake(work / f"{name}.input.jsonl", [t for t, _ in held])
        records = classify(head, work / f"{name}.input.jsonl", work / f"{name}.results.jsonl")
        measured("in distribution", f"book blurbs, held-out fold {fold + 1}", head, records, [l for _, l in held], genres)

    # Label shift: draws of 1,000 test passages.
    by_court = {c: [i for i, g in enumerate(test_gold) if g == c] for c in courts}
    base = {c: len(by_court[c]) / len(test_gold) for c in courts}
    for court in courts:
        for shift in (0.0, -0.10, 0.10, 0.20):
            if base[court] + shift <= 0:
                continue
            for seed in range(3):
                rng = random.Random(f"{court} {shift} {seed}")
                shares = {c: base[c] * (1 - base[court] - shift) / (1 - base[court]) for c in courts}
                shares[court] = base[court] + shift
                picks = []
                for c in courts:
                    picks += [rng.choice(by_court[c]) for _ in range(round(1000 * shares[c]))]
                name = f"shift-{court}-{shift:+.2f}-{seed}"
                kind = "no shift (draw)" if shift == 0 else "label shift"
                row = measured(kind, name, area_of_law, [test_records[i] for i in picks], [test_gold[i] for i in picks],
                               courts)
                row.update({"court": court, "shift": shift})

    def summary(rows):
        with_truth = [r for r in rows if r.get("accuracy") is not None and r.get("estimated_accuracy") is not None]
        errors = [abs(r["estimated_accuracy"] - r["accuracy"]) for r in with_truth]
        f1_errors = [abs(r["estimated_macro_f1"] - r["macro_f1"]) for r in with_truth]
        covered = [r["accuracy_interval"][0] <= r["accuracy"] <= r["accuracy_interval"][1] for r in with_truth]
        return {
            "runs": len(rows),
            "flagged": sum(r["flagged"] for r in rows),
            "accuracy_mae": statistics.mean(errors) if errors else None,
            "accuracy_max_error": max(errors) if errors else None,
            "macro_f1_mae": statistics.mean(f1_errors) if f1_errors else None,
            "interval_coverage": sum(covered) / len(covered) if covered else None,
        }

    kinds = sorted({r["kind"] for r in runs})
    result = {"summary": {kind: summary([r for r in runs if r["kind"] == kind]) for kind in kinds},
              "shift_10_points": summary([r for r in runs if r.get("shift") == 0.10]),
              "runs": runs}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))
    print("+10 points:", json.dumps(result["shift_10_points"]))
    for r in runs:
        if not r["name"].startswith("shift-"):
            print(json.dumps(r))


if __name__ == "__main__":
    main()
