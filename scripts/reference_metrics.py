"""Reference metrics: recomputes docclass's evaluation numbers with scikit-learn, seqeval
and numpy from the same gold data and predictions, and compares them to 1e-6.

Run by scripts/reference_check.sh (which makes a throw-away venv); reads the reports in
eval/ (their predictions.jsonl.gz and the gold data named in metrics.json, checked by
sha256) and the multi-label fixture in tests/fixtures/reference/, and writes
  eval/reference/comparison.json, eval/reference/comparison.md  (what agreed, max |diff|)
  eval/reference/expected.json  (the reference values; tests/eval.rs checks docclass against them)
Gold data is read here independently of docclass (TSV/JSONL columns, CoNLL with a tag map).
"""
import gzip
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import seqeval
import sklearn
from seqeval.metrics import classification_report as seq_report
from seqeval.metrics import f1_score as seq_f1
from seqeval.metrics import precision_score as seq_precision
from seqeval.metrics import recall_score as seq_recall
from seqeval.scheme import IOB2
from sklearn.metrics import (accuracy_score, confusion_matrix, hamming_loss, log_loss,
                             precision_recall_fscore_support)
from sklearn.preprocessing import MultiLabelBinarizer

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-6
CALIBRATION_BINS = 10
TABLE_THRESHOLDS = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999]

# What is checked: each report's gold data and how to read it.
CASES = [
    {"name": "area-of-law on ler_court_cls test", "report": "eval/area-of-law/ler_court_cls-test",
     "gold": "datasets/ler_court_cls/test.tsv", "read": {"kind": "tsv", "text": "text", "label": "label"}},
    {"name": "GermEval 2018 coarse, held-out fifth", "report": "eval/germeval2018/coarse-heldout",
     "gold": ".cache/germeval2018/test.tsv", "read": {"kind": "tsv", "text": 1, "label": 2, "no_header": True}},
    {"name": "legal-entities on ler_test (coarse)", "report": "eval/legal-entities/ler_test",
     "gold": "datasets/ler/ler_test.conll", "read": {"kind": "conll", "tag_map": "labels/ler-coarse.tsv"}},
    {"name": "multi-label fixture", "report": None,
     "gold": "tests/fixtures/reference/multilabel-gold.jsonl",
     "predictions": "tests/fixtures/reference/multilabel-predictions.jsonl", "read": {"kind": "jsonl"}},
]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_tsv(path, spec):
    """{id: [labels]} as docclass names rows: PATH:LINE (1-based line of the row)."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if spec.get("no_header"):
        text_at, label_at, first = spec["text"] - 1, spec["label"] - 1, 0
    else:
        header = [h.strip().lstrip("\ufeff") for h in lines[0].rstrip("\r").split("\t")]
        text_at, label_at, first = header.index(spec["text"]), header.index(spec["label"]), 1
    gold = {}
    for number, line in enumerate(lines[first:], start=first + 1):
        fields = line.rstrip("\r").split("\t")
        if all(not f.strip() for f in fields):
            continue
        gold[f"{path}:{number}"] = [fields[label_at].strip()]
    return gold


def read_jsonl(path):
    gold = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            row = json.loads(line)
            labels = row["label"] if isinstance(row["label"], list) else [row["label"]]
            gold[str(row.get("id", f"{path}:{number}"))] = labels
    return gold


def read_conll(path, tag_map_path):
    tag_map = {}
    for line in Path(tag_map_path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            fine, coarse = line.split("\t")
            tag_map[fine.strip()] = coarse.strip()
    sentences, words, first = {}, [], None
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines + [""], start=1):
        fields = line.strip().split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences[f"{path}:{first}"] = words
            words, first = [], None
            continue
        tag = fields[-1]
        if tag != "O":
            prefix, kind = tag.split("-", 1)
            tag = f"{prefix}-{tag_map.get(kind, kind)}"
        if first is None:
            first = number
        words.append(tag)
    return sentences


def read_predictions(path):
    records = {}
    raw = Path(path).read_bytes()
    text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode("utf-8")
    for line in text.splitlines():
        if line.strip():
            record = json.loads(line)
            records[str(record["id"])] = record
    return records


def classification_reference(gold, predictions):
    ids = list(gold)
    y_true = [gold[i][0] for i in ids]
    y_pred = [predictions[i]["label"] for i in ids]
    labels = sorted(set(y_true) | set(y_pred))
    values = {"/classification/documents": len(ids), "/classification/accuracy": accuracy_score(y_true, y_pred)}
    for average, prefix in [("macro", "/classification/macro_"), ("micro", "/classification/micro/"),
                            ("weighted", "/classification/weighted/")]:
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        values.update({prefix + "precision": p, prefix + "recall": r, prefix + "f1": f})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        values.update({f"/classification/per_class/{i}/precision": p[i], f"/classification/per_class/{i}/recall": r[i],
                       f"/classification/per_class/{i}/f1": f[i], f"/classification/per_class/{i}/support": int(s[i])})
    for g, row in enumerate(confusion_matrix(y_true, y_pred, labels=labels)):
        for p_, count in enumerate(row):
            values[f"/classification/confusion_matrix/counts/{g}/{p_}"] = int(count)
    # Log loss over every label the predictions score.
    scored = sorted({s["label"] for i in ids for s in predictions[i]["scores"]})
    probabilities = np.array([[{s["label"]: s["score"] for s in predictions[i]["scores"]}.get(l, 0.0) for l in scored]
                              for i in ids], dtype=np.float64)
    values["/classification/log_loss"] = log_loss(y_true, probabilities, labels=scored)
    # Calibration and coverage (no library computes these; numpy, as documented in eval/README.md).
    confidence = np.array([predictions[i]["score"] for i in ids], dtype=np.float64)
    correct = np.array([t == p_ for t, p_ in zip(y_true, y_pred)])
    bins = np.minimum(np.floor(confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    ece = 0.0
    for b in range(CALIBRATION_BINS):
        inside = bins == b
        n = int(inside.sum())
        values[f"/classification/calibration/bins/{b}/documents"] = n
        if n:
            gap = abs(correct[inside].mean() - confidence[inside].mean())
            ece += n / len(ids) * gap
            values[f"/classification/calibration/bins/{b}/accuracy"] = correct[inside].mean()
            values[f"/classification/calibration/bins/{b}/confidence"] = confidence[inside].mean()
    values["/classification/calibration/ece"] = ece
    order = np.argsort(-confidence, kind="stable")
    kept_right = np.cumsum(correct[order])
    sorted_conf = confidence[order]
    cuts = [k for k in range(len(ids)) if k + 1 == len(ids) or sorted_conf[k + 1] != sorted_conf[k]]
    for t, threshold in enumerate(TABLE_THRESHOLDS):
        kept = int((confidence >= threshold).sum())
        values[f"/classification/coverage/table/{t}/documents"] = kept
        values[f"/classification/coverage/table/{t}/accuracy"] = correct[confidence >= threshold].mean() if kept else 1.0
    reaching = [k for k in cuts if kept_right[k] / (k + 1) >= 0.99]
    if reaching:
        k = reaching[-1]
        values["/classification/coverage/target/threshold"] = sorted_conf[k]
        values["/classification/coverage/target/coverage"] = (k + 1) / len(ids)
        values["/classification/coverage/target/accuracy"] = kept_right[k] / (k + 1)
    return values


def multi_label_reference(gold, predictions):
    ids = list(gold)
    y_true = [gold[i] for i in ids]
    y_pred = [predictions[i]["labels"] for i in ids]
    binarizer = MultiLabelBinarizer(classes=sorted({l for ls in y_true + y_pred for l in ls}))
    t, p = binarizer.fit_transform(y_true), binarizer.transform(y_pred)
    values = {"/multi_label/subset_accuracy": accuracy_score(t, p), "/multi_label/hamming_loss": hamming_loss(t, p)}
    for average, prefix in [("macro", "/multi_label/macro_"), ("micro", "/multi_label/micro/"),
                            ("weighted", "/multi_label/weighted/")]:
        pr, rc, f, _ = precision_recall_fscore_support(t, p, average=average, zero_division=0)
        values.update({prefix + "precision": pr, prefix + "recall": rc, prefix + "f1": f})
    pr, rc, f, s = precision_recall_fscore_support(t, p, average=None, zero_division=0)
    for i in range(len(binarizer.classes_)):
        values.update({f"/multi_label/per_label/{i}/precision": pr[i], f"/multi_label/per_label/{i}/recall": rc[i],
                       f"/multi_label/per_label/{i}/f1": f[i], f"/multi_label/per_label/{i}/support": int(s[i])})
    return values


def entity_reference(gold, predictions):
    ids = list(gold)
    y_true = [gold[i] for i in ids]
    y_pred = [predictions[i]["tags"] for i in ids]
    values = {}
    for mode, kwargs in [("default", {}), ("strict_iob2", {"mode": "strict", "scheme": IOB2})]:
        base = f"/entities/{mode}"
        values[f"{base}/precision"] = seq_precision(y_true, y_pred, **kwargs)
        values[f"{base}/recall"] = seq_recall(y_true, y_pred, **kwargs)
        values[f"{base}/f1"] = seq_f1(y_true, y_pred, **kwargs)
        report = seq_report(y_true, y_pred, output_dict=True, zero_division=0, **kwargs)
        values[f"{base}/support"] = int(report["micro avg"]["support"])
        for kind, row in report.items():
            if kind.endswith(" avg"):
                continue
            for key, name in [("precision", "precision"), ("recall", "recall"), ("f1-score", "f1"), ("support", "support")]:
                values[f"{base}/per_type/{kind}/{name}"] = row[key] if name != "support" else int(row[key])
    return values


def docclass_metrics_for(case):
    """The fixture has no committed report: docclass scores it here."""
    out = ROOT / ".cache" / "reference" / "multilabel"
    subprocess.run([str(ROOT / "target/release/docclass"), "eval", "--predictions", case["predictions"],
                    "--gold", case["gold"], "--report", str(out), "--force"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / "metrics.json").read_text())


def pointer(document, path):
    for part in path.strip("/").split("/"):
        document = document[int(part)] if isinstance(document, list) else document.get(part)
        if document is None:
            return None
    return document


def main():
    comparison, expected, failures = [], [], 0
    for case in CASES:
        gold_path = ROOT / case["gold"]
        if not gold_path.exists():
            sys.exit(f"reference: {case['gold']} is missing: run scripts/setup.sh (and scripts/train_default.sh for GermEval)")
        if case["report"]:
            metrics = json.loads((ROOT / case["report"] / "metrics.json").read_text())
            if metrics["data"]["sha256"] != sha256(gold_path):
                sys.exit(f"reference: {case['gold']} is not the file {case['report']} was made from")
            predictions_path = f"{case['report']}/predictions.jsonl.gz"
        else:
            metrics = docclass_metrics_for(case)
            predictions_path = case["predictions"]
        predictions = read_predictions(ROOT / predictions_path)
        read = case["read"]
        if read["kind"] == "conll":
            values = entity_reference(read_conll(case["gold"], read["tag_map"]), predictions)
        elif read["kind"] == "jsonl":
            values = multi_label_reference(read_jsonl(case["gold"]), predictions)
        else:
            values = classification_reference(read_tsv(case["gold"], read), predictions)
        values = {k: float(v) if not isinstance(v, int) else v for k, v in values.items()}
        diffs = {}
        for path, reference in values.items():
            ours = pointer(metrics, path)
            diffs[path] = math.inf if ours is None else abs(float(ours) - reference)
        bad = {p: d for p, d in diffs.items() if not d <= TOLERANCE}
        failures += len(bad)
        comparison.append({"case": case["name"], "report": case["report"], "gold": case["gold"],
                           "predictions": predictions_path, "values_compared": len(values),
                           "max_abs_diff": max(diffs.values()), "disagreements": bad})
        expected.append({"case": case["name"], "gold": case["gold"], "predictions": predictions_path,
                         "eval_args": eval_args(read), "values": values})
        print(f"reference: {case['name']}: {len(values)} values, max |diff| {max(diffs.values()):.3g}, "
              f"{len(bad)} beyond {TOLERANCE}")
    out = ROOT / "eval" / "reference"
    out.mkdir(parents=True, exist_ok=True)
    versions = {"python": sys.version.split()[0], "scikit-learn": sklearn.__version__, "seqeval": seqeval_version(),
                "numpy": np.__version__}
    (out / "comparison.json").write_text(json.dumps({"tolerance": TOLERANCE, "versions": versions,
                                                     "cases": comparison, "agree": failures == 0}, indent=2) + "\n")
    (out / "expected.json").write_text(json.dumps({"tolerance": TOLERANCE, "versions": versions,
                                                   "cases": expected}, indent=2) + "\n")
    lines = ["# docclass against scikit-learn and seqeval", "",
             f"Written by `scripts/reference_check.sh` with {', '.join(f'{k} {v}' for k, v in versions.items())}.",
             f"Every value must agree to {TOLERANCE}.",
             "scikit-learn: accuracy, precision/recall/F1/support (per class, macro, micro, weighted),",
             "confusion matrix, log loss, multi-label scores (subset accuracy, Hamming loss).",
             "seqeval: entity precision/recall/F1 overall and per type, default and strict IOB2 modes.",
             "numpy (no library computes them): calibration bins and ECE, the coverage table and the",
             "threshold for accuracy 0.99, following the definitions in eval/README.md. The entity",
             "error counts (exact/partial/wrong type/missed/spurious) have no reference here; unit",
             "tests in src/eval/entities.rs check them by hand.", "",
             "| case | values compared | max abs diff | disagreements |", "|---|---|---|---|"]
    for c in comparison:
        lines.append(f"| {c['case']} | {c['values_compared']} | {c['max_abs_diff']:.3g} | {len(c['disagreements'])} |")
    (out / "comparison.md").write_text("\n".join(lines) + "\n")
    if failures:
        sys.exit(f"reference: {failures} values disagree; see eval/reference/comparison.json")
    print("reference: all values agree")


def eval_args(read):
    if read["kind"] == "conll":
        return ["--tag-map", read["tag_map"]]
    if read.get("no_header"):
        return ["--no-header", "--text-column", str(read["text"]), "--label-column", str(read["label"])]
    return []


def seqeval_version():
    try:
        from importlib.metadata import version
        return version("seqeval")
    except Exception:  # noqa: BLE001 - the version is informative only
        return "unknown"


if __name__ == "__main__":
    main()
