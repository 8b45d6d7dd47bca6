#!/usr/bin/env bash
# CPU per acknowledged message, per server thread: starts the server with no
# providers, runs loadgen (64 connections, 2 KB texts) for SECONDS, and
# divides each thread's utime+stime by the number of 202s.  Steadier than
# throughput on a shared machine, so the way to compare two builds.
# usage: bench/cpu_per_msg.sh [BIN] [SECONDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/build/shivneri}
secs=${2:-5}
loadgen=${BENCH_TOOLS:-$root/build/bench}/loadgen
work=$(mktemp -d)
spid=
trap '[ -n "$spid" ] && kill -9 $spid 2>/dev/null; rm -rf "$work"' EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port); ap=$(port)
printf '[server]\ndata_dir = %s/data\nhttp_listen = 127.0.0.1:%s\nsmtp_listen =\nagent_listen = 127.0.0.1:%s\n' \
	"$work" "$hp" "$ap" >"$work/c.ini"
"$bin" serve -c "$work/c.ini" 2>"$work/serve.log" &
spid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$hp/healthz" >/dev/null && break; sleep 0.1; done
out=$("$loadgen" --port "$hp" --connections 64 --duration "$secs" 2>&1)
ok=$(echo "$out" | awk '/requests ok/{print $4}')
echo "$out" | grep -E "throughput|latency"
hz=$(getconf CLK_TCK)
for t in /proc/$spid/task/*; do
	c=$(awk '{print $14+$15}' "$t/stat")
	[ "$c" -gt 0 ] || continue
	echo "  thread $(basename "$t") ($(cat "$t/comm")): $((c * 1000000 / hz / ok)) us/msg"
done
kill $spid; wait $spid 2>/dev/null || true; spid=
