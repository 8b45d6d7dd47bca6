#!/usr/bin/env bash
# Relaying's two halves apart: how fast Shivneri accepts over SMTP with its
# provider disabled, then how fast it delivers the queue alone.
#
# Starts smtp-sink and `shivneri serve` with one spawned smtp provider
# relaying to it (the shivneri side of smtp_bench.sh), disables the
# provider (POST /v1/providers/sink/disable), sends N messages with
# bench/smtpload (64 sessions, closed loop), then enables it and times the
# drain until GET /v1/stats shows all N delivered, with the CPU the server
# and its agent used meanwhile.  Everything on 127.0.0.1; every wait has a
# deadline; every process is stopped on exit.
#
#   bench/smtp_drain.sh                 # 60,000 messages
#   SMTP_DRAIN_MESSAGES=20000 SHIVNERI_BIN=/tmp/shivneri bench/smtp_drain.sh
#
# Needs root (smtp-sink runs as the postfix user), postfix's smtp-sink,
# python3, curl and the release build with its bench tools.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SHIVNERI_BIN:-$root/build/shivneri}
tools=${BENCH_TOOLS:-$root/build/bench}
N=${SMTP_DRAIN_MESSAGES:-60000}
TIMEOUT=${SMTP_DRAIN_TIMEOUT:-300}

die() { echo "smtp_drain: $*" >&2; exit 1; }
# shellcheck source=bench/smtp_lib.sh
. "$root/bench/smtp_lib.sh"
[ "$(id -u)" -eq 0 ] || die "needs root (smtp-sink -u postfix)"
for t in smtp-sink python3 curl timeout; do
	command -v "$t" >/dev/null || die "$t missing (scripts/install-deps.sh)"
done
[ -x "$BIN" ] || die "no shivneri at $BIN"
[ -x "$tools/smtpload" ] || die "no smtpload in $tools"

work=$(mktemp -d "${BENCH_TMPDIR:-/tmp}/shivneri-smtp-drain.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

smtp=$(free_port) http=$(free_port) agent=$(free_port) sink=$(free_port)
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$work/agent.secret"
chmod 600 "$work/agent.secret"
setsid smtp-sink -u postfix -h sink.bench "127.0.0.1:$sink" 1024 >/dev/null 2>&1 &
pids+=($!)
cat >"$work/shivneri.ini" <<EOF
[server]
data_dir = $work/data
http_listen = 127.0.0.1:$http
agent_listen = 127.0.0.1:$agent
agent_secret_file = $work/agent.secret
smtp_listen = 127.0.0.1:$smtp
smtp_max_client_connections = 256

$(sink_provider "$sink")
EOF
setsid "$BIN" serve -c "$work/shivneri.ini" >"$work/server.log" 2>&1 &
spid=$!
pids+=($spid)
api() { curl -fsS "http://127.0.0.1:$http$1" "${@:2}"; }
up() { api /v1/providers 2>/dev/null | grep -q '"state": *"up"'; }
wait_until 20 "the sink provider to be up (log: $work/server.log)" up
api /v1/providers/sink/disable -X POST >/dev/null

timeout "$TIMEOUT" "$tools/smtpload" --port "$smtp" --sessions 64 \
	--messages "$N" --from sender@bench.test --to rcpt@bench.test \
	>"$work/load.txt" || die "smtpload failed: $(cat "$work/load.txt")"
echo "intake, provider disabled: $(cat "$work/load.txt")"

apid=$(pgrep -P "$spid" -f " agent" | head -1 || true)
c0=$(cpu_of "$spid") a0=$(cpu_of "$apid") t0=$(date +%s.%N)
api /v1/providers/sink/enable -X POST >/dev/null
drained() { api /v1/stats | grep -q "\"delivered\": *$N[,}]"; }
# Polled often: the drain lasts a few seconds.
WAIT_STEP=0.02 wait_until "$TIMEOUT" "the queue to drain" drained
t1=$(date +%s.%N) c1=$(cpu_of "$spid") a1=$(cpu_of "$apid")
python3 -c "
n, s = $N, $t1 - $t0
print('delivery alone: %d messages in %.2f s, %.0f msg/s, server %.0f us/msg, agent %.0f us/msg'
      % (n, s, n / s, ($c1 - $c0) / n * 1e6, ($a1 - $a0) / n * 1e6))"
echo "stats: $(api /v1/stats)"
