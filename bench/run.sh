#!/bin/bash
# bench/run.sh: builds the release binary and the bench tools, then runs
# every benchmark in turn, each in its own scratch folder with its own
# server on free loopback ports:
#   intake    fsync_ceiling + sqlite_commit in the data dir's filesystem,
#             then loadgen against a server with no providers (same run)
#   e2e       N messages to two supervised maildir agents, until delivered
#   failover  kill -9 and SIGSTOP of hand-started agents
#   memory    1,000,000 queued messages, no provider, VmRSS / VmHWM
#   connectors  one agent of each HTTP type against bench/fake_api:
#             delivered/s, connections per 1,000, 503 outage latency
# Results (text and one JSON line per benchmark) go to OUT, by default
# build/bench-results/<UTC time>/.  Each step is capped with timeout(1); the
# drivers stop every process they started, on error and on SIGTERM too.
#
# usage: bench/run.sh [--quick] [--no-build] [--out DIR]
#                     [--only intake,e2e,failover,memory,connectors]
# --no-build uses SHIVNERI_BIN and BENCH_TOOLS (default build/shivneri and
# build/bench/) as they are.
# BENCH_TMPDIR chooses the filesystem the data dirs live on (default: TMPDIR
# or /tmp); it must not be tmpfs for the durability numbers to mean anything.
set -euo pipefail

cd "$(dirname "$0")/.."
QUICK=0
BUILD=1
ONLY="intake,e2e,failover,memory,connectors"
OUT=""
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--no-build) BUILD=0 ;;
	--only) ONLY="$2"; shift ;;
	--out) OUT="$2"; shift ;;
	-h | --help) sed -n '2,22p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
OUT=${OUT:-build/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}

if [ "$BUILD" = 1 ]; then
	cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build build -j2
fi
mkdir -p "$OUT"

child=""
cleanup() {
	if [ -n "$child" ]; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
	fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

machine() {
	local tmp=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
	echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit:  $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "nproc:   $(nproc)"
	echo "cpu:     $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
	echo "memory:  $(sed -n 's/^MemTotal:[[:space:]]*//p' /proc/meminfo)"
	echo "kernel:  $(uname -r)"
	echo "data fs: $(df -PT "$tmp" | awk 'NR == 2 { print $1, $2, $7 }')"
	if command -v lsblk >/dev/null; then
		echo "disks:"
		lsblk -d -o NAME,ROTA,SIZE,MODEL 2>/dev/null | sed 's/^/  /'
	fi
}

# step NAME CAP_SECONDS COMMAND...: runs one driver with its output saved.
failed=""
step() {
	local name=$1 cap=$2 rc=0
	shift 2
	case ",$ONLY," in
	*",$name,"*) ;;
	*) return 0 ;;
	esac
	echo "--- $name (cap ${cap}s)"
	timeout --signal=TERM --kill-after=30 "$cap" "$@" --json \
	    >"$OUT/$name.txt" 2>&1 &
	child=$!
	wait "$child" || rc=$?
	child=""
	cat "$OUT/$name.txt"
	if [ "$rc" -ne 0 ]; then
		echo "--- $name failed with status $rc"
		failed="$failed $name"
	fi
}

machine | tee "$OUT/machine.txt"
if [ "$QUICK" = 1 ]; then
	step intake 180 bench/intake.py --seconds 5 --warmup 1 \
	    --ceiling-seconds 2
	step e2e 300 bench/e2e.py --messages 2000
	step failover 300 bench/failover.py --reps 2 --stop-reps 1
	step memory 300 bench/memory.py --messages 50000
	step connectors 600 bench/connectors.py --messages 2000 \
	    --outage-seconds 2
else
	step intake 300 bench/intake.py --seconds 20 --warmup 2 \
	    --ceiling-seconds 5
	step e2e 600 bench/e2e.py --messages 20000
	step failover 600 bench/failover.py --reps 5 --stop-reps 3
	step memory 1200 bench/memory.py --messages 1000000
	step connectors 1800 bench/connectors.py --messages 20000 --rounds 3
fi
grep -h '^{' "$OUT"/*.txt >"$OUT/results.jsonl" 2>/dev/null || true
echo "--- results in $OUT"
if [ -n "$failed" ]; then
	echo "--- failed:$failed"
	exit 1
fi
