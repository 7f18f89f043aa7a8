#!/usr/bin/env bash
# scripts/check_report_html.sh REPORT.html [OUT.png]: opens a report in headless Chromium
# (Debian's chromium package; installed with apt-get when missing and run as root) and
# renders it to a PNG. Fails when the page logs a JavaScript error, when its script did
# not run to the end (it marks <body data-report-ready="yes">), when a chart or table is
# missing, when a chart is blank (draws no bar, point or line), or when the PNG is not
# written.
set -euo pipefail
html=${1:?usage: check_report_html.sh REPORT.html [OUT.png]}
png=${2:-${html%.html}.png}
[ -f "$html" ] || { echo "check_report_html: $html: no such file" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "check_report_html: chromium is missing (apt-get install chromium)" >&2; exit 1; }
  echo "check_report_html: installing Debian's chromium" >&2
  # A fresh machine has no package lists yet.
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
profile=$(mktemp -d)
log=$(mktemp)
trap 'rm -rf "$profile" "$log" "$log.dom"' EXIT
# No network: flags that stop Chromium's own background connections.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile" --enable-logging=stderr --v=0)
url="file://$(realpath "$html")"
chromium "${flags[@]}" --virtual-time-budget=5000 --dump-dom "$url" >"$log.dom" 2>"$log" || true
chromium "${flags[@]}" --window-size=1280,2400 --screenshot="$(realpath -m "$png")" "$url" 2>>"$log" >/dev/null || true
fail() { echo "check_report_html: $html: $*" >&2; exit 1; }
if grep -E 'CONSOLE.*(Uncaught|Error)|Uncaught ' "$log" >/dev/null; then
  grep -E 'CONSOLE|Uncaught' "$log" >&2
  fail "the page logged a JavaScript error"
fi
grep -q 'data-report-ready="yes"' "$log.dom" || fail "the page's script did not finish (no data-report-ready)"
svgs=$(grep -o '<svg' "$log.dom" | wc -l)
tables=$(grep -o '<table' "$log.dom" | wc -l)
[ "$svgs" -ge 1 ] && [ "$tables" -ge 1 ] || fail "expected charts and tables, found $svgs SVG and $tables tables"
blank=$(python3 -c '
import re, sys
charts = re.findall(r"<svg.*?</svg>", open(sys.argv[1], encoding="utf-8").read(), re.S)
print(sum(not re.search(r"<(rect|circle|path|line|polyline|polygon)\b", c) for c in charts))' "$log.dom")
[ "$blank" = 0 ] || fail "$blank of the $svgs charts draw nothing"
[ -s "$png" ] || fail "no screenshot written to $png"
echo "check_report_html: $html: rendered without errors ($svgs charts, $tables tables) → $png"
