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
# 18.7 and 19.2 with 20 s).  Two at a time since, the smoke takes half
# the wall time it took one at a time (26 targets: about 3.5 min, not 7).
seconds=${FUZZ_SECONDS:-15}
status=0
# UBSan recovers by default (the fuzz build has no -fno-sanitize-recover):
# without this a report would be printed and the run still pass.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# Targets run two at a time (FUZZ_JOBS): each is one process on one core,
# and nothing else runs during the smoke.
jobs_max=${FUZZ_JOBS:-2}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run_one BIN: one target; its verdict line in $out/NAME.res, and the end
# of its log after it when it failed.
run_one() {
	local bin=$1 name corpus dict work done_runs
	name=$(basename "$bin")
	corpus="$root/tests/fuzz/corpus/${name#fuzz_}"
	# A target's dictionary, when it has one: tests/fuzz/NAME.dict
	# (config.dict for fuzz_config), the words its input is made of.
	dict="$root/tests/fuzz/${name#fuzz_}.dict"
	local opts=()
	[ -f "$dict" ] && opts+=("-dict=$dict")
	work=$(mktemp -d)
	[ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
	if "$bin" -runs="$runs" -max_total_time="$seconds" -max_len=65536 \
	    ${opts[@]+"${opts[@]}"} "$work" >"$work.log" 2>&1; then
		done_runs=$(grep -o 'Done [0-9]* runs' "$work.log" | cut -d' ' -f2)
		echo "fuzz: $name ok (${done_runs:-?} runs)" >"$out/$name.res"
	else
		{ echo "fuzz: $name FAILED"; tail -40 "$work.log"; } >"$out/$name.res"
	fi
	rm -rf "$work" "$work.log"
}

shopt -s nullglob
bins=()
for bin in "$build"/fuzz_*; do
	[ -x "$bin" ] && bins+=("$bin")
done
for bin in ${bins[@]+"${bins[@]}"}; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do
		wait -n || true
	done
	run_one "$bin" &
done
wait
for bin in ${bins[@]+"${bins[@]}"}; do
	res="$out/$(basename "$bin").res"
	if [ ! -s "$res" ]; then
		echo "fuzz: $(basename "$bin") FAILED (no verdict)"; status=1
		continue
	fi
	cat "$res"
	head -1 "$res" | grep -q ' ok (' || status=1
done
exit $status
