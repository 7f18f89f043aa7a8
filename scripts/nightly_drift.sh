#!/usr/bin/env bash
# scripts/nightly_drift.sh INBOX OUT: what a scheduled job runs each night. It classifies
# the day's intake into OUT/results.jsonl, then compares it with the model's training
# data (docclass drift, OUT/drift/drift.html). Settings from the environment:
#   DOCCLASS       the binary (default target/release/docclass)
#   DOCCLASS_MODEL the pipeline or head (default models/de-legal)
#   DATE_FIELD     the input field with each document's date (default: file times)
#   PERIOD         day, week or month (default day)
#   DRIFT_ARGS     further drift options, such as "--threshold label_share=0.1"
# Exit status, for cron or a scheduler: 0 no drift; 5 drift (OUT/DRIFT names the
# page); 3 some documents failed but no drift; anything else: the job failed.
set -uo pipefail
DOCCLASS=${DOCCLASS:-target/release/docclass}
[ $# -eq 2 ] || { echo "usage: $0 INBOX OUT" >&2; exit 2; }
inbox=$1 out=$2
date_args=()
[ -n "${DATE_FIELD:-}" ] && date_args=(--date-field "$DATE_FIELD")

classified=0
"$DOCCLASS" classify "$inbox" --out "$out/results.jsonl" "${date_args[@]}" --quiet || classified=$?
if [ "$classified" -ne 0 ] && [ "$classified" -ne 3 ]; then
  echo "nightly: classify failed with status $classified" >&2
  exit "$classified"
fi

drifted=0
# shellcheck disable=SC2086 # DRIFT_ARGS is a list of options
"$DOCCLASS" drift "$out/results.jsonl" --out "$out/drift" --period "${PERIOD:-day}" "${date_args[@]}" \
  --fail-on-drift --force ${DRIFT_ARGS:-} || drifted=$?
case "$drifted" in
  0) rm -f "$out/DRIFT"; echo "nightly: no drift" ;;
  5)
    echo "$out/drift/drift.html" >"$out/DRIFT"
    echo "nightly: DRIFT: see $out/drift/drift.html (the periods are in its drift.json, \"drifted\")" >&2
    exit 5
    ;;
  *) echo "nightly: drift failed with status $drifted" >&2; exit "$drifted" ;;
esac
exit "$classified"
