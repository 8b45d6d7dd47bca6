#!/bin/bash
# bench/compare.sh: measures what a change costs, in one run, on a noisy
# shared machine.  It checks REV_A and REV_B out into temporary git
# worktrees, builds each one's server (RelWithDebInfo), and runs the intake
# and end-to-end benchmarks against the two binaries in turn, round after
# round (A B, then B A, and so on, so that a machine that slowly gets busier
# or quieter weighs on both sides alike), then prints per revision the
# median and range of each figure and the ratio of the medians B/A.
#
# The instrument is the same for both sides: the drivers (bench/*.py) of
# the checkout this script lives in, and its tools (loadgen, fsync_ceiling,
# sqlite_commit) built once from that checkout; only the server binary
# differs.  Both revisions must accept the configuration these drivers
# write.  Every step runs under timeout(1); the worktrees, builds and
# scratch folders are removed on exit, also on Ctrl-C and SIGTERM.
#
# usage: bench/compare.sh [--out DIR] [--keep] REV_A REV_B
# environment (defaults in brackets):
#   COMPARE_ROUNDS            runs of each benchmark per revision [3]
#   COMPARE_ONLY              benchmarks to run, of intake,e2e [intake,e2e]
#   COMPARE_INTAKE_SECONDS    intake measuring time per run [10]
#   COMPARE_WARMUP            intake warm-up per run, seconds [2]
#   COMPARE_CEILING_SECONDS   fsync/SQLite ceiling per intake run [1]
#   COMPARE_E2E_MESSAGES      messages per end-to-end run [10000]
#   COMPARE_JOBS              build parallelism [2]
#   COMPARE_WORKDIR           where worktrees and builds go [mktemp -d]
#   BENCH_TMPDIR              filesystem of the servers' data dirs [/tmp]
# --keep leaves the work folder (worktrees, builds, server logs) in place.
# Results: OUT (default build/bench-compare/<UTC time>/) holds each run's
# output, results.jsonl (one line per run, tagged with side and round) and
# summary.txt.  Exit status 1 when any run failed (the summary says which).
set -euo pipefail

cd "$(dirname "$0")/.."
SRC=$(pwd)
OUT=""
KEEP=0
while [ $# -gt 0 ]; do
	case "$1" in
	--out) OUT="$2"; shift ;;
	--keep) KEEP=1 ;;
	-h | --help) sed -n '2,32p' "$0"; exit 0 ;;
	-*) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
	shift
done
if [ $# -ne 2 ]; then
	echo "usage: bench/compare.sh [--out DIR] [--keep] REV_A REV_B" >&2
	exit 2
fi
ROUNDS=${COMPARE_ROUNDS:-3}
ONLY=${COMPARE_ONLY:-intake,e2e}
INTAKE_S=${COMPARE_INTAKE_SECONDS:-10}
WARMUP=${COMPARE_WARMUP:-2}
CEILING_S=${COMPARE_CEILING_SECONDS:-1}
E2E_N=${COMPARE_E2E_MESSAGES:-10000}
JOBS=${COMPARE_JOBS:-2}

sha_a=$(git rev-parse --verify --quiet "$1^{commit}") ||
	{ echo "compare.sh: $1 is not a commit" >&2; exit 2; }
sha_b=$(git rev-parse --verify --quiet "$2^{commit}") ||
	{ echo "compare.sh: $2 is not a commit" >&2; exit 2; }
OUT=${OUT:-build/bench-compare/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${COMPARE_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/shivneri-compare.XXXXXX")}
mkdir -p "$WORK"

child=""
worktrees=()
cleanup() {
	if [ -n "$child" ]; then
		kill -TERM "$child" 2>/dev/null || true
		wait "$child" 2>/dev/null || true
		child=""
	fi
	if [ "$KEEP" = 1 ]; then
		echo "--- kept $WORK (remove worktrees with: git worktree remove --force DIR)"
		return
	fi
	for wt in "${worktrees[@]}"; do
		git worktree remove --force "$wt" >/dev/null 2>&1 || true
	done
	git worktree prune >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run CAP LOGFILE COMMAND...: one step in the background, so that a signal
# to this script reaches it through cleanup().
run() {
	local cap=$1 log=$2 rc=0
	shift 2
	timeout --signal=TERM --kill-after=30 "$cap" "$@" >"$log" 2>&1 &
	child=$!
	wait "$child" || rc=$?
	child=""
	return "$rc"
}

build_rev() {
	local side=$1 sha=$2 wt="$WORK/$1"
	echo "--- $side: $(git log -1 --format='%h %s' "$sha")"
	git worktree add --detach "$wt" "$sha" >/dev/null 2>&1 ||
		{ echo "compare.sh: git worktree add $wt failed" >&2; exit 1; }
	worktrees+=("$wt")
	if ! run 3600 "$OUT/build-$side.log" sh -c "cmake -S '$wt' -B '$wt/build' \
	    -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build '$wt/build' \
	    -j$JOBS --target shivneri"; then
		tail -20 "$OUT/build-$side.log" >&2
		echo "compare.sh: building $side ($sha) failed" >&2
		exit 1
	fi
}

build_tools() {
	echo "--- tools: bench/ of $SRC"
	if ! run 1800 "$OUT/build-tools.log" sh -c "cmake -S '$SRC' \
	    -B '$WORK/tools' -DCMAKE_BUILD_TYPE=RelWithDebInfo && \
	    cmake --build '$WORK/tools' -j$JOBS --target loadgen \
	    fsync_ceiling sqlite_commit"; then
		tail -20 "$OUT/build-tools.log" >&2
		echo "compare.sh: building the bench tools failed" >&2
		exit 1
	fi
}

# bench SIDE ROUND NAME: one driver run against SIDE's binary.
failed=""
bench() {
	local side=$1 round=$2 name=$3 log cap rc=0
	local args=(--bin "$WORK/$side/build/shivneri" --tools "$WORK/tools/bench"
		--json)
	case ",$ONLY," in
	*",$name,"*) ;;
	*) return 0 ;;
	esac
	log="$OUT/$name-$side-$round.txt"
	if [ "$name" = intake ]; then
		cap=$(awk -v s="$INTAKE_S" -v w="$WARMUP" -v c="$CEILING_S" \
		    'BEGIN { printf "%d", s + w + 3 * c + 120 }')
		args+=(--seconds "$INTAKE_S" --warmup "$WARMUP"
			--ceiling-seconds "$CEILING_S")
	else
		cap=600
		args+=(--messages "$E2E_N" --timeout 480)
	fi
	run "$cap" "$log" /usr/bin/python3 "$SRC/bench/$name.py" "${args[@]}" ||
		rc=$?
	if [ "$rc" -ne 0 ] || ! grep -q '^{' "$log"; then
		echo "    $name $side round $round FAILED (status $rc, see $log)"
		failed="$failed $name-$side-$round"
		return 0
	fi
	grep '^{' "$log" | tail -1 |
	    /usr/bin/python3 -c 'import json, sys
d = json.loads(sys.stdin.read())
d.update(side=sys.argv[1], round=int(sys.argv[2]), sha=sys.argv[3])
print(json.dumps(d, sort_keys=True))' "$side" "$round" \
	    "$([ "$side" = A ] && echo "$sha_a" || echo "$sha_b")" \
	    >>"$OUT/results.jsonl"
	/usr/bin/python3 - "$log" <<'EOF'
import json, sys
lines = [l for l in open(sys.argv[1]) if l.startswith("{")]
d = json.loads(lines[-1])
if d["bench"] == "intake":
    lg = d["loadgen"]
    print("    %.0f msg/s, p99 %.2f ms, fsync ceiling %.0f/s" %
          (lg["rps"], lg["p99_us"] / 1e3, d["fsync"]["ops_per_s"]))
else:
    print("    %.0f delivered/s (%d of %d)%s" %
          (d["delivered_per_s"], d["delivered"], d["messages"],
           "" if d["complete"] else " INCOMPLETE"))
EOF
}

{
	echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "A:       $sha_a ($1)"
	echo "B:       $sha_b ($2)"
	echo "rounds:  $ROUNDS; intake ${INTAKE_S}s (+${WARMUP}s warm-up)," \
	    "e2e $E2E_N messages; only $ONLY"
	echo "nproc:   $(nproc); load: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "data fs: $(df -PT "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}" |
	    awk 'NR == 2 { print $1, $2, $7 }')"
} | tee "$OUT/machine.txt"
: >"$OUT/results.jsonl"
build_tools
build_rev A "$sha_a"
build_rev B "$sha_b"

for round in $(seq 1 "$ROUNDS"); do
	if [ $((round % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
	for name in intake e2e; do
		for side in $order; do
			case ",$ONLY," in
			*",$name,"*) echo "--- round $round: $name $side" ;;
			esac
			bench "$side" "$round" "$name"
		done
	done
done

/usr/bin/python3 - "$OUT/results.jsonl" "$sha_a" "$sha_b" "$failed" \
    <<'EOF' | tee "$OUT/summary.txt"
import json, statistics, sys

runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sha = {"A": sys.argv[2][:10], "B": sys.argv[3][:10]}
METRICS = [  # (bench, label, getter, higher is better)
    ("intake", "intake acknowledged msg/s", lambda d: d["loadgen"]["rps"],
     True),
    ("intake", "intake p50 ms", lambda d: d["loadgen"]["p50_us"] / 1e3,
     False),
    ("intake", "intake p99 ms", lambda d: d["loadgen"]["p99_us"] / 1e3,
     False),
    ("intake", "(disk) fsync ceiling ops/s",
     lambda d: d["fsync"]["ops_per_s"], True),
    ("e2e", "e2e delivered msg/s", lambda d: d["delivered_per_s"], True),
    ("e2e", "e2e submission msg/s", lambda d: d["loadgen"]["rps"], True),
    ("e2e", "e2e submission p99 ms",
     lambda d: d["loadgen"]["p99_us"] / 1e3, False),
]


def fmt(v):
    return "%.2f" % v if v < 100 else "{:,.0f}".format(v)


print("== A %s vs B %s: median [min-max] of n runs" % (sha["A"], sha["B"]))
print("  %-28s %-30s %-30s %s" % ("", "A", "B", "B/A"))
for bench, label, get, higher in METRICS:
    vals = {}
    for side in "AB":
        vals[side] = [get(d) for d in runs
                      if d["bench"] == bench and d["side"] == side
                      and d.get("complete", True)]
    if not vals["A"] and not vals["B"]:
        continue
    cells = {}
    med = {}
    for side in "AB":
        v = vals[side]
        if v:
            med[side] = statistics.median(v)
            cells[side] = "%s [%s-%s] n=%d" % (fmt(med[side]), fmt(min(v)),
                                               fmt(max(v)), len(v))
        else:
            cells[side] = "no runs"
    ratio = ("%.3f" % (med["B"] / med["A"])
             if med.get("A") and "B" in med else "-")
    print("  %-28s %-30s %-30s %s %s" % (label, cells["A"], cells["B"],
                                         ratio, "(higher is better)" if higher
                                         else "(lower is better)"))
if sys.argv[4].strip():
    print("failed runs:", sys.argv[4].strip())
EOF
echo "--- results in $OUT"
[ -z "$failed" ] || exit 1
