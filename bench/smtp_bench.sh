#!/usr/bin/env bash
# SMTP intake: Shivneri against a stock Postfix, in one run, with Postfix's
# own load generator (smtp-source) and discard server (smtp-sink).
#
# Three sides, all on 127.0.0.1, each keeping its durability (Shivneri: the
# store's commit before 250; Postfix: its fsync'ed queue file before 250):
# "shivneri-intake" (no provider: intake and store only), "shivneri"
# (relaying to smtp-sink through a spawned smtp provider) and "postfix"
# (relaying to the same smtp-sink through its relayhost).  For each
# concurrency (1, 10 and 64 sessions by default) each side gets smtp-source
# with the same 2 KB message in turn, and a relaying side's backlog is
# drained before the next side's run starts.
#
# Figures per run, from a rate pass with exactly the sessions named:
# accepted messages/s (smtp-source's messages over its wall time; it aborts
# on any reply that is not a success), mean time per message by Little's
# law (sessions / rate), the Shivneri server's CPU per message and
# smtp-source's, the store's commits.  Then a latency pass, smtp-source
# again with one extra probe session (smtplib, sequential 2 KB messages)
# timed per message: its p50/p99, from SMTP_BENCH_PROBE_SAMPLES samples
# (1,000) or what it took in SMTP_BENCH_PROBE_MAX_S (30 s), smtp-source
# keeping the load on until then.  The summary ends with the 1-session
# bound of any server that flushes before its 250 (fsync_ceiling
# --overwrite plus smtp-source's own CPU per message).
#
# Then the paced pass, for each Shivneri side: bench/smtpload (built with
# the bench tools) offers SMTP_BENCH_PACED_RATE messages a second (default:
# 10 times Postfix's rate at the largest session count in this run) from
# that many sessions for SMTP_BENCH_PACED_S seconds (10), and times every message from
# the moment it was due to the reply after its dot: the latency an
# application sending 10 times what saturates Postfix would see.  The
# closed-loop passes above run every session flat out, where the mean
# latency is sessions / rate by Little's law whatever the server.
#
# Needs root (Postfix runs its daemons as the postfix user), postfix
# (smtp-source, smtp-sink), python3, curl and a release build of shivneri.
# Every process it starts is stopped on exit (also on Ctrl-C); every wait
# has a deadline; every run is under timeout(1).  bench/README.md has more.
#
#   bench/smtp_bench.sh                   # 5000 messages per run
#   bench/smtp_bench.sh --quick           # 500 messages per run
#   SMTP_BENCH_SESSIONS="1 10 64 128" SMTP_BENCH_MESSAGES=20000 bench/smtp_bench.sh
#   SHIVNERI_BIN=build/shivneri BENCH_TMPDIR=/var/tmp bench/smtp_bench.sh --keep
#   SMTP_BENCH_SIDES=postfix bench/smtp_bench.sh      # one side only
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SHIVNERI_BIN:-$root/build/shivneri}
TMPBASE=${BENCH_TMPDIR:-/tmp}
SESSIONS=${SMTP_BENCH_SESSIONS:-"1 10 64"}
MESSAGES=${SMTP_BENCH_MESSAGES:-5000}
SIZE=${SMTP_BENCH_SIZE:-2048}
RUN_TIMEOUT=${SMTP_BENCH_RUN_TIMEOUT:-300}
# The latency pass: the probe's samples, and the most time it may take.
PROBE_SAMPLES=${SMTP_BENCH_PROBE_SAMPLES:-1000}
PROBE_MAX_S=${SMTP_BENCH_PROBE_MAX_S:-30}
SIDES=${SMTP_BENCH_SIDES:-"shivneri-intake shivneri postfix"}
# The paced pass: offered rate (empty: 10 x Postfix's at the largest
# session count), length.
PACED_RATE=${SMTP_BENCH_PACED_RATE:-}
PACED_S=${SMTP_BENCH_PACED_S:-10}
OUT=""
KEEP=0

while [ $# -gt 0 ]; do
	case "$1" in
	--quick) MESSAGES=${SMTP_BENCH_MESSAGES_QUICK:-500} ;;
	--keep) KEEP=1 ;;
	--out) OUT=$2; shift ;;
	--bin) BIN=$2; shift ;;
	-h | --help) sed -n '2,38p' "$0"; exit 0 ;;
	*) echo "smtp_bench: unknown argument $1" >&2; exit 2 ;;
	esac
	shift
done

die() { echo "smtp_bench: $*" >&2; exit 1; }
# shellcheck source=bench/smtp_lib.sh
. "$root/bench/smtp_lib.sh"
[ "$(id -u)" -eq 0 ] || die "needs root (Postfix drops its daemons to the postfix user)"
for t in smtp-source smtp-sink postfix python3 curl timeout; do
	command -v "$t" >/dev/null || die "$t missing (scripts/install-deps.sh)"
done
has_side() { [[ " $SIDES " == *" $1 "* ]]; }
{ ! has_side shivneri && ! has_side shivneri-intake; } || [ -x "$BIN" ] || die "no shivneri at $BIN (cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build)"
[ -n "$OUT" ] || OUT=$root/build/bench-results/smtp-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"

# Postfix's unprivileged daemons must reach the folder: no 0700 parents.
work=$(mktemp -d "$TMPBASE/shivneri-smtp-bench.XXXXXX")
chmod 755 "$work"
pids=()
pf_etc=$work/postfix/etc

cleanup() {
	set +e
	if [ -f "$work/postfix/queue/pid/master.pid" ]; then
		postfix -c "$pf_etc" stop >/dev/null 2>&1
	fi
	for p in "${pids[@]}"; do
		kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null
	done
	for p in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL -- "-$p" 2>/dev/null || kill -KILL "$p" 2>/dev/null
	done
	if [ "$KEEP" -eq 1 ]; then
		echo "smtp_bench: kept $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- machine

{
	echo "date        $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "commit      $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
	echo "nproc       $(nproc)"
	echo "cpu         $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
	echo "loadavg     $(cut -d' ' -f1-3 /proc/loadavg) (before)"
	echo "busy procs  $(ps -eo stat= | grep -c '^R') running now"
	echo "filesystem  $(df -T "$work" | awk 'NR==2 {print $2, $1}') ($work)"
	echo "postfix     $(postconf -d -h mail_version 2>/dev/null)"
	echo "shivneri    $("$BIN" version 2>/dev/null | head -1)"
	echo "messages    $MESSAGES per run, ${SIZE}-byte body, sessions: $SESSIONS"
} | tee "$OUT/machine.txt"
if df -T "$work" | awk 'NR==2 {exit !($2 == "tmpfs")}'; then
	echo "smtp_bench: warning: $work is tmpfs: fsync costs nothing there" >&2
fi
# The disk's fsync rate now: both sides wait on it, and on a shared machine
# it moves more than either side does.
tools=${BENCH_TOOLS:-$root/build/bench}
# Both ways: appending (a log that grows) and overwriting blocks already
# written (the least a durable write costs here, whatever the layout); the
# summary bounds the 1-session rate of any server that flushes per message
# by the second.
: >"$OUT/fsync.json"
if [ -x "$tools/fsync_ceiling" ]; then
	for mode in "" --overwrite; do
		timeout 30 "$tools/fsync_ceiling" --dir "$work" --seconds 2 $mode --json |
			tee -a "$OUT/fsync.json" | python3 -c '
import json, sys
f = json.load(sys.stdin)
print("fsync       %s(%d)+fdatasync: %.0f ops/s, p50 %d us, p99 %d us" % (
    "overwrite" if f["overwrite"] else "write", f["size"], f["ops_per_s"],
    f["p50_us"], f["p99_us"]))' | tee -a "$OUT/machine.txt"
	done
fi

# ---------------------------------------------------------------- smtp-sink

sink_port=$(free_port)
setsid smtp-sink -u postfix -h sink.bench "127.0.0.1:$sink_port" 1024 \
	>"$work/sink.log" 2>&1 &
pids+=($!)
wait_until 10 "smtp-sink" port_open "$sink_port"

# ---------------------------------------------------------------- Shivneri

# start_shivneri SIDE: "shivneri" relays to smtp-sink through a spawned
# smtp provider; "shivneri-intake" has no provider (intake and store only,
# as bench/intake.py measures HTTP), messages stay queued.
declare -A sv_smtp sv_http sv_pid
start_shivneri() {
	local side=$1 dir=$work/$1 agent
	mkdir -p "$dir/data"
	sv_smtp[$side]=$(free_port)
	sv_http[$side]=$(free_port)
	agent=$(free_port)
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/agent.secret"
	chmod 600 "$dir/agent.secret"
	# smtp_max_client_connections: every session comes from 127.0.0.1
	# here (Postfix exempts $mynetworks from its per-client limit).
	cat >"$dir/shivneri.ini" <<EOF
[server]
data_dir = $dir/data
http_listen = 127.0.0.1:${sv_http[$side]}
agent_listen = 127.0.0.1:$agent
agent_secret_file = $dir/agent.secret
smtp_listen = 127.0.0.1:${sv_smtp[$side]}
smtp_max_client_connections = 256
EOF
	if [ "$side" = shivneri ]; then
		{ echo; sink_provider "$sink_port"; } >>"$dir/shivneri.ini"
	fi
	setsid "$BIN" serve -c "$dir/shivneri.ini" >"$dir/server.log" 2>&1 &
	pids+=($!)
	sv_pid[$side]=$!
	sv_started=$SECONDS
	# A server that exits (a port taken since free_port, a bad
	# configuration) ends the wait at once, with its last words: the
	# work folder and its log go with the exit.
	wait_until 20 "$side /healthz" sv_healthy_or_gone "$side"
	wait_until 20 "$side's SMTP port" port_open "${sv_smtp[$side]}"
	if [ "$side" = shivneri ]; then
		wait_until 20 "$side's sink provider to be up" sv_provider_up "$side"
	fi
}
sv_api() { curl -fsS "http://127.0.0.1:${sv_http[$1]}$2"; }
sv_healthy() { sv_api "$1" /healthz >/dev/null 2>&1; }
sv_healthy_or_gone() {
	kill -0 "${sv_pid[$1]}" 2>/dev/null ||
		die "$1's server exited before it answered: $(tail -5 "$work/$1/server.log")"
	sv_healthy "$1" && return 0
	# Still not up after 20 s: show why before the wait gives up.
	[ $SECONDS -lt $((sv_started + 19)) ] ||
		echo "smtp_bench: $1 not up yet: $(tail -3 "$work/$1/server.log")" >&2
	return 1
}
sv_provider_up() { sv_api "$1" /v1/providers | grep -q '"state": *"up"'; }
# Everything accepted so far is delivered (or failed): nothing in flight.
sv_drained() {
	sv_api "$1" /v1/stats | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if s["queued"] == 0 and s["sending"] == 0 else 1)'
}

# ---------------------------------------------------------------- Postfix

start_postfix() {

	pf=$work/postfix
	mkdir -p "$pf_etc" "$pf/queue" "$pf/data"
	chown postfix:postfix "$pf/data"
	pf_smtp=$(free_port)
	# Debian's master.cf services without chroot (a chroot needs copies of
	# /etc files in the queue folder), and an smtpd on one loopback port.
	cat >"$pf_etc/master.cf" <<EOF
127.0.0.1:$pf_smtp inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
	# Stock settings but for where it lives, what it relays and to whom.
	cat >"$pf_etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $pf/maillog
maillog_file_prefixes = $TMPBASE
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = postfix.bench
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sink_port
EOF
	postfix -c "$pf_etc" start >"$work/postfix-start.log" 2>&1 ||
		die "postfix did not start: $(cat "$work/postfix-start.log") $(tail -5 "$pf/maillog" 2>/dev/null)"
	wait_until 20 "Postfix's smtpd port" port_open "$pf_smtp"

	pf_drained() {
		[ -z "$(find "$pf/queue/incoming" "$pf/queue/active" \
			"$pf/queue/deferred" "$pf/queue/maildrop" -type f -print -quit)" ]
}
}

# ---------------------------------------------------------------- runs

# The probe: one more session, sequential 2 KB messages, each timed from
# MAIL to the reply after the final dot, until the stop file appears.
probe() {
	timeout "$RUN_TIMEOUT" python3 - "$1" "$2" "$3" "$SIZE" "$PROBE_SAMPLES" \
		"$PROBE_MAX_S" <<'EOF'
import os, smtplib, sys, time
port, stop, out, size = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
want, max_s = int(sys.argv[5]), float(sys.argv[6])
line = b"x" * 76 + b"\r\n"
body = (b"From: probe@bench.test\r\nTo: sink@bench.test\r\nSubject: probe\r\n\r\n"
        + line * (size // len(line)))
lat = []
deadline = time.monotonic() + max_s
s = smtplib.SMTP("127.0.0.1", port, timeout=60)
s.ehlo("probe.bench")
# Until enough samples or time, or the load ended (stop: smtp-source is done).
while not os.path.exists(stop) and time.monotonic() < deadline and len(lat) < want:
    t0 = time.perf_counter()
    s.sendmail("probe@bench.test", ["sink@bench.test"], body)
    lat.append(time.perf_counter() - t0)
s.quit()
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
with open(out, "w") as f:
    f.write("%d %.2f %.2f %.2f\n" % (len(lat), pick(0.5), pick(0.99), pick(1.0)))
EOF
}

# The store's commits so far from /metrics: "seconds_sum count ops_sum"
# ("0 0 0" for Postfix, or a build without the commit histograms).
commits_of() {
	if [ -z "${sv_http[$1]:-}" ]; then echo "0 0 0"; return; fi
	sv_api "$1" /metrics 2>/dev/null | awk '
		/^shivneri_store_commit_seconds_sum / { s = $2 }
		/^shivneri_store_commit_seconds_count / { c = $2 }
		/^shivneri_store_commit_batch_size_sum / { o = $2 }
		END { print (c == "" ? "0 0 0" : s " " c " " o) }'
}

# run_source SIDE PORT SESSIONS TAG [COUNT]: smtp-source's run (COUNT
# messages, MESSAGES by default), its output and CPU in $work/TAG.source
# and $work/TAG.cpu; returns its status.
run_source() {
	# TIMEFORMAT: smtp-source's own CPU, to see when the client bounds it.
	{ TIMEFORMAT='%U %S'; time timeout "$RUN_TIMEOUT" smtp-source -d \
		-s "$3" -m "${5:-$MESSAGES}" -l "$SIZE" -f sender@bench.test \
		-t rcpt@bench.test -M client.bench -S "smtp bench $4" \
		"127.0.0.1:$2" >"$work/$4.source" 2>&1; } 2>"$work/$4.cpu"
}

# drain SIDE: waits until a relaying side has sent on all it accepted.
drain() {
	case $1 in
	shivneri) wait_until "$RUN_TIMEOUT" "Shivneri to relay its backlog" sv_drained shivneri ;;
	postfix) wait_until "$RUN_TIMEOUT" "Postfix's queue to empty" pf_drained ;;
	esac
}

# one SIDE PORT SESSIONS: two passes.  The rate pass is smtp-source alone,
# exactly SESSIONS sessions; the latency pass runs it again with the probe
# as one more session, so the probe's figures are taken under at least
# that load.  Prints "side sessions msgs secs rate mean p50 p99 pmax n
# server_cpu client_cpu commit_ms ops_per_commit", all but the probe's
# from the rate pass.
one() {
	local side=$1 port=$2 s=$3 tag stop t0 t1 rc c0 c1 k0 k1 spid=${sv_pid[$1]:-}
	tag=$side-$s
	k0=$(commits_of "$side")
	c0=$(cpu_of "$spid")
	t0=$(date +%s.%N)
	set +e
	run_source "$side" "$port" "$s" "$tag"
	rc=$?
	set -e
	t1=$(date +%s.%N)
	c1=$(cpu_of "$spid")
	k1=$(commits_of "$side")
	[ $rc -eq 0 ] || die "smtp-source against $side failed ($rc): $(tail -3 "$work/$tag.source")"
	drain "$side"

	# The latency pass: the load runs until the probe has its samples
	# (then it is stopped) or ends on its own (then so does the probe).
	stop=$work/$tag.stop
	rm -f "$stop" "$work/$tag-latency.rc"
	(
		set +e
		run_source "$side" "$port" "$s" "$tag-latency" $((MESSAGES * 20))
		echo $? >"$work/$tag-latency.rc"
		touch "$stop"
	) &
	local load_pid=$!
	probe "$port" "$stop" "$work/$tag.probe" || true
	if [ ! -e "$stop" ]; then
		pkill -TERM -f "smtp bench $tag-latency" 2>/dev/null || true
	fi
	wait "$load_pid" || true
	rc=$(cat "$work/$tag-latency.rc" 2>/dev/null || echo 1)
	# 143: stopped by us (timeout(1) and smtp-source both got the TERM).
	case $rc in
	0 | 143) ;;
	*) die "smtp-source against $side failed ($rc): $(tail -3 "$work/$tag-latency.source")" ;;
	esac
	drain "$side"
	read -r n p50 p99 pmax <"$work/$tag.probe" || { n=0; p50=nan; p99=nan; pmax=nan; }
	python3 - "$side" "$s" "$MESSAGES" "$t0" "$t1" "$n" "$p50" "$p99" "$pmax" \
		"$c0" "$c1" $(cat "$work/$tag.cpu") $k0 $k1 <<'EOF'
import sys
(side, s, m, t0, t1, n, p50, p99, pmax, c0, c1, cu, cs,
 ks0, kc0, ko0, ks1, kc1, ko1) = sys.argv[1:]
secs = float(t1) - float(t0)
rate = int(m) / secs
server = (float(c1) - float(c0)) / int(m) * 1e6 if float(c1) > 0 else float("nan")
client = (float(cu) + float(cs)) / int(m) * 1e6
# The commits of the rate pass: mean time and size.
kc = float(kc1) - float(kc0)
kms = "%.3f" % ((float(ks1) - float(ks0)) / kc * 1000) if kc > 0 else "-"
kops = "%.1f" % ((float(ko1) - float(ko0)) / kc) if kc > 0 else "-"
print("%s %s %s %.2f %.0f %.2f %s %s %s %s %.0f %.0f %s %s" % (side, s, m,
      secs, rate, int(s) / rate * 1000, p50, p99, pmax, n, server, client,
      kms, kops))
EOF
}

! has_side shivneri-intake || start_shivneri shivneri-intake
! has_side shivneri || start_shivneri shivneri
! has_side postfix || start_postfix

results=$OUT/results.txt
: >"$results"
for s in $SESSIONS; do
	if has_side shivneri-intake; then
		one shivneri-intake "${sv_smtp[shivneri-intake]}" "$s" | tee -a "$results"
	fi
	if has_side shivneri; then
		one shivneri "${sv_smtp[shivneri]}" "$s" | tee -a "$results"
	fi
	if has_side postfix; then
		one postfix "$pf_smtp" "$s" | tee -a "$results"
	fi
done
# The paced pass: every Shivneri side at one offered rate.
paced=$OUT/paced.txt
: >"$paced"
max_s=$(printf '%s\n' $SESSIONS | sort -n | tail -1)
if [ -z "$PACED_RATE" ] && has_side postfix; then
	PACED_RATE=$(awk -v s="$max_s" '$1 == "postfix" && $2 == s { printf "%.0f", 10 * $5 }' "$results")
fi
for side in shivneri-intake shivneri; do
	has_side $side || continue
	if [ -z "$PACED_RATE" ] || [ ! -x "$tools/smtpload" ]; then
		echo "smtp_bench: no paced pass (needs the postfix side or SMTP_BENCH_PACED_RATE, and $tools/smtpload)" >&2
		break
	fi
	# CPU until the backlog is delivered: the whole cost of a message.
	spid=${sv_pid[$side]}
	apid=$(pgrep -P "$spid" -f " agent" | head -1 || true)
	c0=$(cpu_of "$spid")
	a0=$(cpu_of "$apid")
	set +e
	timeout "$RUN_TIMEOUT" "$tools/smtpload" --port "${sv_smtp[$side]}" \
		--sessions "$max_s" --rate "$PACED_RATE" --duration "$PACED_S" \
		--size "$SIZE" --from sender@bench.test --to rcpt@bench.test \
		>"$work/$side.paced" 2>&1
	rc=$?
	set -e
	[ $rc -eq 0 ] || die "smtpload against $side failed ($rc): $(tail -3 "$work/$side.paced")"
	drain "$side"
	ok=$(tail -1 "$work/$side.paced" | sed -n 's/.* ok=\([0-9]*\) .*/\1/p')
	c1=$(cpu_of "$spid")
	a1=$(cpu_of "$apid")
	echo "$side $(tail -1 "$work/$side.paced") $(awk -v c0="$c0" -v c1="$c1" \
		-v a0="$a0" -v a1="$a1" -v n="$ok" 'BEGIN { if (n == 0) n = 1; printf "server_us=%.0f agent_us=%.0f",
		(c1 - c0) / n * 1e6, (a1 - a0) / n * 1e6 }')" | tee -a "$paced"
done
echo "loadavg     $(cut -d' ' -f1-3 /proc/loadavg) (after)" | tee -a "$OUT/machine.txt"

# Shivneri's counts at the end: every accepted message delivered, none
# failed (smtp-sink takes everything).
for side in shivneri-intake shivneri; do
	if has_side $side; then
		echo "$side /v1/stats: $(sv_api $side /v1/stats | tee "$OUT/$side-stats.json")"
	fi
done

python3 - "$results" "$OUT/fsync.json" "$paced" <<'EOF' | tee "$OUT/summary.txt"
import json, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
flush = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
paced = [l.split() for l in open(sys.argv[3]) if l.strip()]
pf = {int(r[1]): float(r[4]) for r in rows if r[0] == "postfix"}
print("side | sessions | accepted msg/s | / Postfix | mean ms (sessions/rate) "
      "| probe p50 / p99 / max ms (n) | server CPU us/msg | smtp-source CPU us/msg "
      "| commit ms (mean) | ops/commit")
print("---|---|---|---|---|---|---|---|---|---")
for r in sorted(rows, key=lambda r: (int(r[1]), r[0])):
    (side, s, m, secs, rate, mean, p50, p99, pmax, n, server, client, kms,
     kops) = r
    ratio = "%.1f" % (float(rate) / pf[int(s)]) if int(s) in pf else "-"
    print("%s | %s | %s | %s | %s | %s / %s / %s (%s) | %s | %s | %s | %s" % (
        side, s, rate, ratio, mean, p50, p99, pmax, n,
        server if server != "nan" else "-", client, kms, kops))
# One session sends a message only after the last one's 250, so each of its
# messages pays a whole flush and smtp-source's own CPU, one after the
# other, before any network or server time.
over = [f for f in flush if f["overwrite"]]
one_pf = [r for r in rows if r[0] == "postfix" and r[1] == "1"]
one_sv = [r for r in rows if r[0] != "postfix" and r[1] == "1"]
if over and one_pf and one_sv:
    floor = over[0]["p50_us"] / 1000 + min(float(r[11]) for r in one_sv) / 1000
    need = float(one_pf[0][5]) / 10
    print()
    print("1 session: 10 x Postfix needs %.3f ms a message; the floor of any "
          "server that flushes before its 250 is %.3f ms (overwrite flush p50 "
          "%d us + smtp-source CPU %.0f us): at most %.1f x Postfix." % (
              need, floor, over[0]["p50_us"],
              min(float(r[11]) for r in one_sv), float(one_pf[0][5]) / floor))
side_relays = lambda side: side == "shivneri"
if paced:
    best_pf = max([float(r[4]) for r in rows if r[0] == "postfix"] or [0])
    print()
    print("Paced: every message timed from when it was due (smtpload)")
    print("side | sessions | offered msg/s | / Postfix's best | accepted msg/s "
          "| p50 / p90 / p99 / p99.9 / max ms | messages "
          "| server / agent CPU us/msg (to the last delivery)")
    print("---|---|---|---|---|---|---|---")
    for r in paced:
        kv = dict(f.split("=", 1) for f in r[1:])
        ms = lambda k: "%.2f" % (int(kv[k]) / 1000)
        print("%s | %s | %s | %s | %s | %s / %s / %s / %s / %s | %s | %s / %s" % (
            r[0], kv["sessions"], kv["rate"],
            "%.1f" % (float(kv["rate"]) / best_pf) if best_pf else "-",
            kv["achieved"], ms("p50_us"), ms("p90_us"), ms("p99_us"),
            ms("p999_us"), ms("max_us"), kv["ok"], kv["server_us"],
            kv["agent_us"] if side_relays(r[0]) else "-"))
EOF
echo "smtp_bench: results in $OUT"
