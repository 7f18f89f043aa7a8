"""docclass train against the tuned TF-IDF + logistic regression baseline on every
shared classification set, on the same splits, with paired tests (run by
scripts/baselines.sh in the reference venv).

The baseline is the one a data scientist would write first:
- word 1-2-grams and char_wb 2-5-grams, sublinear tf, min_df=2, each block
  L2-normalised (and scaled by 1/sqrt(2), so a row has unit length);
- liblinear logistic regression (one against the rest, as liblinear fits it), C in {0.3, 1, 3, 10, 30} and class_weight in
  {None, balanced} chosen by inner 5-fold stratified CV (macro-F1) on the training part.

docclass runs with its defaults: `docclass train TRAIN --out HEAD` (its own
cross-validation on the training part chooses its settings), then `docclass eval`.

Splits (each system sees exactly the same training and test documents):
- germeval2019_blurbs: stratified 5-fold CV (shuffled, seed 0); every blurb is
  predicted once, by the fold that held it out;
- germeval2018 (coarse): every fifth line held out, as scripts/setup.sh does;
- ler_court_cls: train + dev -> test; the docclass side is the committed head
  models/area-of-law, trained as scripts/train_default.sh trains it.

For each set, both systems' predictions become docclass records; `docclass eval
--predictions` scores them and `docclass eval --compare` gives McNemar's test and
paired bootstrap intervals. Writes eval/baselines/<set>/ and eval/baselines/README.md.
Usage: baselines.py [SET ...] (default: all).
"""

import csv
import gzip
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.base import BaseEstimator, TransformerMixin

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "eval" / "baselines"
WORK = ROOT / ".cache" / "baselines"
DOCCLASS = Path(os.environ.get("DOCCLASS", ROOT / "target" / "release" / "docclass"))
csv.field_size_limit(sys.maxsize)


class WordsAndChars(BaseEstimator, TransformerMixin):
    """TF-IDF of word 1-2-grams beside char_wb 2-5-grams, each block L2-normalised."""

    def fit(self, texts, y=None):
        self.words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2).fit(texts)
        self.chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2).fit(texts)
        return self

    def transform(self, texts):
        blocks = [self.words.transform(texts), self.chars.transform(texts)]
        return scipy.sparse.hstack(blocks).tocsr() / np.sqrt(2)


def baseline_predict(train_texts, train_labels, test_texts):
    search = GridSearchCV(
        make_pipeline(WordsAndChars(), OneVsRestClassifier(LogisticRegression(solver="liblinear", max_iter=1000))),
        {
            "onevsrestclassifier__estimator__C": [0.3, 1, 3, 10, 30],
            "onevsrestclassifier__estimator__class_weight": [None, "balanced"],
        },
        scoring="f1_macro",
        cv=StratifiedKFold(5),
        n_jobs=2,
    )
    search.fit(train_texts, train_labels)
    return list(search.predict(test_texts)), search.best_params_


def read_tsv(path, text_column, label_column, header=True, id_column=None):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    start = 1 if header else 0
    # docclass names a row by its id column, else by its file and 1-based line.
    def id_of(i, r):
        return r[id_column] if id_column is not None else f"{path.relative_to(ROOT)}:{i + 1}"
    return [(id_of(i, r), r[text_column], r[label_column]) for i, r in enumerate(rows) if i >= start]


def write_tsv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("label\ttext\n")
        for _, text, label in rows:
            f.write(f"{label}\t{text}\n")


def run(*args):
    started = time.time()
    # Paths as seen from the checkout, so that reports name no machine's folders.
    args = [a.relative_to(ROOT) if isinstance(a, Path) and a.is_relative_to(ROOT) else a for a in args]
    result = subprocess.run([str(DOCCLASS), *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"docclass {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stderr, time.time() - started


def docclass_predict(name, train_rows, test_rows):
    """docclass train on train_rows, eval on test_rows; predicted labels in test order,
    kept between runs of the same docclass binary."""
    cached = WORK / name / "docclass.json"
    binary = hashlib.sha256(DOCCLASS.read_bytes()).hexdigest()
    if cached.exists() and json.loads(cached.read_text())[0] == binary:
        return tuple(json.loads(cached.read_text())[1])
    result = area_of_law() if name.startswith("ler_court_cls/") else docclass_run(name, train_rows, test_rows)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps([binary, result]))
    return result


def docclass_run(name, train_rows, test_rows):
    work = WORK / name
    write_tsv(work / "train.tsv", train_rows)
    write_tsv(work / "test.tsv", test_rows)
    _, train_seconds = run("train", work / "train.tsv", "--out", work / "head", "--force", "--name", "docclass")
    # At f32, the precision the committed comparisons in eval/baselines/ were measured at.
    _, eval_seconds = run("eval", "--model", work / "head", work / "test.tsv", "--precision", "f32",
                          "--report", work / "report", "--force")
    head = json.loads((work / "head" / "head.json").read_text())
    with gzip.open(work / "report" / "predictions.jsonl.gz", "rt", encoding="utf-8") as f:
        labels = [json.loads(line)["label"] for line in f]
    return labels, head["training"]["cross_validation"], train_seconds + eval_seconds


def area_of_law():
    """The committed area-of-law head is this very run (train + dev, in that order, with
    the defaults): scripts/train_default.sh's command, and its test report."""
    head, report = ROOT / "models/area-of-law", ROOT / "eval/area-of-law/ler_court_cls-test"
    _, train_seconds = run("train", "datasets/ler_court_cls/train.tsv", "--dev", "datasets/ler_court_cls/dev.tsv",
                           "--out", head, "--force", "--refit-with-dev")
    _, eval_seconds = run("eval", "--model", head, "datasets/ler_court_cls/test.tsv", "--precision", "f32",
                          "--report", report, "--force")
    cv = json.loads((head / "head.json").read_text())["training"]["cross_validation"]
    with gzip.open(report / "predictions.jsonl.gz", "rt", encoding="utf-8") as f:
        labels = [json.loads(line)["label"] for line in f]
    return labels, cv, train_seconds + eval_seconds


def splits(name):
    """(gold file, rows in gold order, list of (train indices, test indices))."""
    if name == "germeval2019_blurbs":
        gold = ROOT / "datasets/germeval2019_blurbs/blurbs.tsv"
        rows = read_tsv(gold, 2, 1, id_column=0)
        labels = [r[2] for r in rows]
        folds = StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(rows)), labels)
        return gold, rows, [(list(a), list(b)) for a, b in folds]
    if name == "germeval2018":
        gold = ROOT / ".cache/germeval2018/test.tsv"
        train = read_tsv(ROOT / ".cache/germeval2018/train.tsv", 0, 1, header=False)
        test = read_tsv(gold, 0, 1, header=False)
        return gold, train + test, [(list(range(len(train))), list(range(len(train), len(train) + len(test))))]
    if name == "ler_court_cls":
        gold = ROOT / "datasets/ler_court_cls/test.tsv"
        train = read_tsv(ROOT / "datasets/ler_court_cls/train.tsv", 1, 0) + read_tsv(
            ROOT / "datasets/ler_court_cls/dev.tsv", 1, 0
        )
        test = read_tsv(gold, 1, 0)
        return gold, train + test, [(list(range(len(train))), list(range(len(train), len(train) + len(test))))]
    raise SystemExit(f"unknown set {name}")


def gold_args(name):
    return ["--no-header", "--text-column", "1", "--label-column", "2"] if name == "germeval2018" else []


def evaluate(name):
    gold, rows, folds = splits(name)
    predicted = {"baseline": {}, "docclass": {}}
    details = []
    for f, (train_index, test_index) in enumerate(folds):
        train_rows = [rows[i] for i in train_index]
        test_rows = [rows[i] for i in test_index]
        # The baseline's predictions depend on the data only: kept between runs.
        cached = WORK / name / f"fold{f + 1}" / "baseline.json"
        if cached.exists():
            base, params, base_seconds = json.loads(cached.read_text())
        else:
            started = time.time()
            base, params = baseline_predict([r[1] for r in train_rows], [r[2] for r in train_rows], [r[1] for r in test_rows])
            base_seconds = time.time() - started
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps([base, params, base_seconds]))
        ours, cv, seconds = docclass_predict(f"{name}/fold{f + 1}", train_rows, test_rows)
        for system, labels in [("baseline", base), ("docclass", ours)]:
            for row, label in zip(test_rows, labels):
                predicted[system][row[0]] = label
        gold_labels = [r[2] for r in test_rows]
        detail = {
            "fold": f + 1, "train": len(train_rows), "test": len(test_rows),
            "baseline_macro_f1": f1_score(gold_labels, base, average="macro"), "baseline_params": params,
            "baseline_seconds": round(base_seconds, 1),
            "docclass_macro_f1": f1_score(gold_labels, ours, average="macro"), "docclass_seconds": round(seconds, 1),
            "docclass_cv": {part: cv[part]["mean"] if cv.get(part) else None for part in ["lexical_only", "dense_only", "combined"]},
        }
        print(json.dumps(detail), flush=True)
        details.append(detail)
    out = OUT / name
    for system in predicted:
        path = WORK / name / f"{system}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for id_, label in predicted[system].items():
                f.write(json.dumps({"id": id_, "label": label, "model": system}) + "\n")
        run("eval", "--predictions", path, "--gold", gold.relative_to(ROOT), *gold_args(name), "--system", system,
            "--report", WORK / name / f"{system}-report", "--force")
    run("eval", "--compare", WORK / name / "baseline-report", WORK / name / "docclass-report", "--report", out, "--force")
    (out / "folds.json").write_text(json.dumps(details, indent=2) + "\n")
    return details


def summary():
    """eval/baselines/README.md from every set's comparison."""
    lines = [
        "# docclass train against tuned TF-IDF + logistic regression",
        "",
        "Written by `scripts/baselines.sh` (see `scripts/baselines.py` for the baseline, the splits and",
        "how docclass is run). A is the baseline, B is `docclass train` with its defaults; both see the",
        "same training and test documents. The interval is the paired bootstrap 95% interval of B − A.",
        "",
        "| set | test documents | baseline macro-F1 | docclass macro-F1 | B − A [95% interval] | McNemar p (A right only / B right only) | docclass CV on its training part: lexical / dense / combined |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for folder in sorted(p for p in OUT.iterdir() if (p / "comparison.json").exists()):
        comparison = json.loads((folder / "comparison.json").read_text())
        folds = json.loads((folder / "folds.json").read_text())
        macro = next(b for b in comparison["bootstrap"] if b["metric"] == "macro-F1")
        mcnemar = comparison["mcnemar"]
        cv = " · ".join(
            "/".join(f"{f['docclass_cv'][part]:.3f}" if f["docclass_cv"][part] is not None else "–"
                     for part in ["lexical_only", "dense_only", "combined"])
            for f in folds
        )
        lines.append(
            f"| {folder.name} | {comparison['documents']} | {macro['a']:.4f} | {macro['b']:.4f} | "
            f"{macro['delta']:+.4f} [{macro['low']:+.4f}, {macro['high']:+.4f}] | "
            f"{mcnemar['p_value']:.3g} ({mcnemar['only_a_right']} / {mcnemar['only_b_right']}) | {cv} |"
        )
    meta = json.loads((OUT / "meta.json").read_text()) if (OUT / "meta.json").exists() else {}
    lines += ["", f"scikit-learn {meta.get('scikit_learn', '?')}, Python {meta.get('python', '?')}.",
              "Per-fold scores, the baseline's chosen parameters and times are in each set's `folds.json`."]
    (OUT / "README.md").write_text("\n".join(lines) + "\n")


def main():
    names = sys.argv[1:] or ["germeval2019_blurbs", "germeval2018", "ler_court_cls"]
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"scikit_learn": sklearn.__version__, "python": platform.python_version()}
    (OUT / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for name in names:
        evaluate(name)
        summary()


if __name__ == "__main__":
    main()
