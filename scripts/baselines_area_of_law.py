"""The classical baselines for area-of-law, measured three ways (run by
scripts/baselines_area_of_law.sh in the reference venv):

- dev: fitted on train.tsv, scored on dev.tsv (how docclass selects its head);
- blocked CV: 5 folds over train + dev, each court's passages cut into 5 contiguous
  blocks, so that a fold holds out whole stretches of decisions as the positional
  test split does (a random split would put neighbouring passages on both sides);
- test: fitted on train + dev, scored on test.tsv (as the committed head is).

Writes eval/area-of-law/baselines/{results.json,README.md} and each system's test
predictions as docclass records (.cache/baselines/area-of-law/<system>.jsonl), so that `docclass eval
--predictions` scores them and `eval --compare` tests them against the docclass head.
"""

import csv
import json
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.svm import LinearSVC

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "datasets" / "ler_court_cls"
OUT = ROOT / "eval" / "area-of-law" / "baselines"
# Per-document predictions are regenerated, not committed.
PREDICTIONS = ROOT / ".cache" / "baselines" / "area-of-law"
FOLDS = 5
csv.field_size_limit(sys.maxsize)


def read(name):
    with open(DATA / name, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[1] for r in rows[1:]], [r[0] for r in rows[1:]]


WORDS = dict(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
CHARS = dict(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
# Word and character n-grams side by side, each block L2-normalised and scaled by 1/sqrt(2)
# so that a document's joint vector has unit length.
WORDS_AND_CHARS = [WORDS, CHARS]
SYSTEMS = {
    "word 1-2-grams, LR C=10": (WORDS, lambda: LogisticRegression(C=10, max_iter=3000)),
    "word 1-2-grams, LR C=30": (WORDS, lambda: LogisticRegression(C=30, max_iter=3000)),
    "word 1-2-grams, LR C=100": (WORDS, lambda: LogisticRegression(C=100, max_iter=3000)),
    "word 1-2-grams, LinearSVC C=1": (WORDS, lambda: LinearSVC(C=1, random_state=0)),
    "char_wb 2-5-grams, LR C=100": (CHARS, lambda: LogisticRegression(C=100, max_iter=3000)),
    "char_wb 2-5-grams, LinearSVC C=0.3": (CHARS, lambda: LinearSVC(C=0.3, random_state=0)),
    "char_wb 2-5-grams, LinearSVC C=1": (CHARS, lambda: LinearSVC(C=1, random_state=0)),
    "word 1-2 + char_wb 2-5-grams, LR C=30": (WORDS_AND_CHARS, lambda: LogisticRegression(C=30, max_iter=3000)),
    "word 1-2 + char_wb 2-5-grams, LinearSVC C=1": (WORDS_AND_CHARS, lambda: LinearSVC(C=1, random_state=0)),
}


class Vectorizer:
    """TF-IDF of one feature family, or of several stacked side by side."""

    def __init__(self, args):
        families = args if isinstance(args, list) else [args]
        self.parts = [TfidfVectorizer(**family) for family in families]
        self.scale = 1 / np.sqrt(len(self.parts))

    def fit_transform(self, texts):
        return self._stack([part.fit_transform(texts) for part in self.parts])

    def transform(self, texts):
        return self._stack([part.transform(texts) for part in self.parts])

    def _stack(self, blocks):
        return blocks[0] if len(blocks) == 1 else scipy.sparse.hstack(blocks).tocsr() * self.scale


def fit_predict(system, train_texts, train_labels, test_texts):
    vectorizer_args, model = system
    vectorizer = Vectorizer(vectorizer_args)
    x = vectorizer.fit_transform(train_texts)
    return model().fit(x, train_labels).predict(vectorizer.transform(test_texts))


def fit_score(system, train_texts, train_labels, test_texts, test_labels):
    return f1_score(test_labels, fit_predict(system, train_texts, train_labels, test_texts), average="macro")


def slug(name):
    return re.sub("-+", "-", "".join(c if c.isalnum() else "-" for c in name.lower())).strip("-")


def blocked_folds(labels):
    """Each label's positions (in file order) cut into FOLDS contiguous blocks."""
    folds = [[] for _ in range(FOLDS)]
    for label in sorted(set(labels)):
        positions = [i for i, l in enumerate(labels) if l == label]
        n = len(positions)
        for k in range(FOLDS):
            folds[k] += positions[k * n // FOLDS:(k + 1) * n // FOLDS]
    return folds


def main():
    train_texts, train_labels = read("train.tsv")
    dev_texts, dev_labels = read("dev.tsv")
    test_texts, test_labels = read("test.tsv")
    # Train then dev: each court's passages stay in document order.
    all_texts, all_labels = train_texts + dev_texts, train_labels + dev_labels
    folds = blocked_folds(all_labels)
    results = []
    for name, system in SYSTEMS.items():
        started = time.time()
        dev = fit_score(system, train_texts, train_labels, dev_texts, dev_labels)
        cv = []
        for k in range(FOLDS):
            held = set(folds[k])
            fit = [i for i in range(len(all_texts)) if i not in held]
            cv.append(fit_score(system, [all_texts[i] for i in fit], [all_labels[i] for i in fit],
                                [all_texts[i] for i in folds[k]], [all_labels[i] for i in folds[k]]))
        predicted = fit_predict(system, all_texts, all_labels, test_texts)
        test = f1_score(test_labels, predicted, average="macro")
        (PREDICTIONS).mkdir(parents=True, exist_ok=True)
        with open(PREDICTIONS / f"{slug(name)}.jsonl", "w", encoding="utf-8") as f:
            # Line 1 of test.tsv is the header: the first passage is line 2, as docclass numbers it.
            for line, label in enumerate(predicted, start=2):
                f.write(json.dumps({"id": f"datasets/ler_court_cls/test.tsv:{line}", "label": label}) + "\n")
        row = {"system": name, "dev_macro_f1": dev, "cv_macro_f1": float(np.mean(cv)), "cv_folds": cv,
               "test_macro_f1": test, "seconds": round(time.time() - started, 1)}
        print(json.dumps(row), flush=True)
        results.append(row)
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"command": "scripts/baselines_area_of_law.sh", "scikit_learn": sklearn.__version__,
            "python": platform.python_version(), "folds": FOLDS}
    (OUT / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = ["# area-of-law: classical baselines", "",
             f"Written by `{meta['command']}` (scikit-learn {meta['scikit_learn']}); see the script's docstring.", "",
             "| system | dev (fit on train) | blocked 5-fold CV (train + dev) | test (fit on train + dev) |",
             "| --- | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r['system']} | {r['dev_macro_f1']:.4f} | {r['cv_macro_f1']:.4f} | {r['test_macro_f1']:.4f} |")
    (OUT / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
