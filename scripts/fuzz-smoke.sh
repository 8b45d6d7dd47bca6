#!/usr/bin/env bash
# Runs every libFuzzer target over its seed corpus and then for a bounded
# number of fresh inputs: a smoke test that each parser survives hostile
# input, not a replacement for long fuzzing runs.
set -euo pipefail
build=${1:-build-fuzz}
root=$(cd "$(dirname "$0")/.." && pwd)
runs=${FUZZ_RUNS:-200000}
# Each target stops at whichever comes first, runs or seconds: the slow
# ones (the session targets, link, mime_fields, sendgrid_json) take the
# whole time, and 60 s each put make test at the 20-minute mark; 30 s each
# put it there again once the suites grew (2026-12-01: 19.5 to 20.5 min;
# 18.7 and 19.2 with 20 s).
seconds=${FUZZ_SECONDS:-15}
status=0
# UBSan recovers by default (the fuzz build has no -fno-sanitize-recover):
# without this a report would be printed and the run still pass.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
shopt -s nullglob
for bin in "$build"/fuzz_*; do
	[ -x "$bin" ] || continue
	name=$(basename "$bin")
	corpus="$root/tests/fuzz/corpus/${name#fuzz_}"
	# A target's dictionary, when it has one: tests/fuzz/NAME.dict
	# (config.dict for fuzz_config), the words its input is made of.
	dict="$root/tests/fuzz/${name#fuzz_}.dict"
	opts=()
	[ -f "$dict" ] && opts+=("-dict=$dict")
	work=$(mktemp -d)
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
	if "$bin" -runs="$runs" -max_total_time="$seconds" -max_len=65536 \
	    ${opts[@]+"${opts[@]}"} "$work" >"$work.log" 2>&1; then
		done_runs=$(grep -o 'Done [0-9]* runs' "$work.log" | cut -d' ' -f2)
		echo "fuzz: $name ok (${done_runs:-?} runs)"
	else
		echo "fuzz: $name FAILED"; tail -40 "$work.log"; status=1
	fi
	rm -rf "$work" "$work.log"
done
exit $status
