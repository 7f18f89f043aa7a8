#!/usr/bin/env bash
# scripts/check_pages.sh: the pages an analyst opens, rendered in headless Chromium
# (scripts/check_report_html.sh): the archive overview of 40 ler_court_cls test passages
# classified with evidence by the default pipeline, the drift page of those results
# against the default pipeline's training profiles, and the committed evaluation
# reports. Needs scripts/setup.sh first. Fails on a page error, a missing chart or table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
DOCCLASS=target/release/docclass
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -n 41 datasets/ler_court_cls/test.tsv >"$work/passages.tsv"
"$DOCCLASS" classify "$work/passages.tsv" --explain 8 --out "$work/results/passages.jsonl" --quiet
"$DOCCLASS" report "$work/results/passages.jsonl" --label-names models/area-of-law/label-names.tsv \
  --out "$work/overview.html"
grep -q '<div class="evidence">' "$work/overview.html" || { echo "check_pages: the overview shows no evidence" >&2; exit 1; }
scripts/check_report_html.sh "$work/overview.html" "$work/overview.png"
"$DOCCLASS" drift "$work/results/passages.jsonl" --out "$work/drift"
grep -q 'training profile of area-of-law' "$work/drift/drift.html" \
  || { echo "check_pages: the drift page does not compare with the training profile" >&2; exit 1; }
scripts/check_report_html.sh "$work/drift/drift.html" "$work/drift.png"
for report in eval/area-of-law/ler_court_cls-test/report.html eval/legal-entities/ler_test/report.html; do
  scripts/check_report_html.sh "$report" "$work/$(basename "$(dirname "$report")").png"
done
