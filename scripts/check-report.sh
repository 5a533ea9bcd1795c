#!/usr/bin/env bash
# Renders the trace example's HTML report in headless Chromium and checks what the
# browser made of it: the timeline is drawn (a slice per poll, run and worker task),
# every function of the example has its row, failures are marked, and the page needs
# nothing outside itself. `--screenshot` also writes docs/trace-report.png.
#
#   bash scripts/check-report.sh [--screenshot]
#
# Needs Debian's chromium (`sudo apt-get install chromium`).
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then
  echo "check-report: no chromium; install it with: sudo apt-get install chromium" >&2
  exit 1
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo run --release -q -p concurrency-examples --features tracing --example trace -- "$out" >"$out/run.txt"

# No network at all for the page: it must not need any.
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
       --disable-background-networking --disable-component-update --disable-sync
       --user-data-dir="$out/profile" --window-size=1500,1250)
timeout 120 "$chromium" "${flags[@]}" --dump-dom "file://$out/report.html" >"$out/dom.html" 2>"$out/chromium.log"

fail() { echo "check-report: $*" >&2; exit 1; }
grep -q '<svg id="timeline"' "$out/dom.html" || fail "no timeline in the rendered page"
slices=$(grep -o '<rect class="slice' "$out/dom.html" | wc -l)
[ "$slices" -ge 20 ] || fail "only $slices slices drawn"
for function in crunch read_source parse_slowly risky fetch flaky_upload slow_service; do
  grep -q "<tr><td>$function</td>" "$out/dom.html" || fail "no row for $function"
done
for mark in "✕ crashed" "✕ timed out" "✕ returned Err"; do
  grep -q "$mark" "$out/dom.html" || fail "no '$mark' mark"
done
grep -q '<table id="blocked">' "$out/dom.html" || fail "the blocking poll is not listed"
if grep -Eq '<script|<link|src=' "$out/dom.html"; then fail "the page loads something"; fi

png="$out/report.png"
timeout 120 "$chromium" "${flags[@]}" --screenshot="$png" "file://$out/report.html" 2>>"$out/chromium.log"
size=$(stat -c %s "$png")
[ "$size" -gt 20000 ] || fail "the screenshot is nearly empty ($size bytes)"
if [ "${1:-}" = "--screenshot" ]; then
  cp "$png" docs/trace-report.png
  echo "wrote docs/trace-report.png"
fi
echo "check-report: the report rendered in $("$chromium" --version 2>/dev/null | head -1): $slices slices, every function's row, the failures marked"
