# Shell helpers shared by smtp_bench.sh and smtp_drain.sh (sourced; each
# script defines die() first).

# A free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_until SECONDS WHAT COMMAND...: polls COMMAND every WAIT_STEP
# seconds (0.1 by default).
wait_until() {
	local secs=$1 what=$2 end
	shift 2
	end=$((SECONDS + secs))
	until "$@"; do
		[ $SECONDS -lt $end ] || die "timed out after ${secs}s waiting for $what"
		sleep "${WAIT_STEP:-0.1}"
	done
}

port_open() {
	python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",int(sys.argv[1])),1).close()' "$1" 2>/dev/null
}

# CPU seconds (user + system, all threads) of a process so far, or 0.
cpu_of() {
	[ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || { echo 0; return; }
	awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

# sink_provider PORT: the configuration section of the smtp provider that
# relays to smtp-sink on PORT, spawned by the server.
sink_provider() {
	cat <<EOC
[provider.sink]
type = smtp
host = 127.0.0.1
port = $1
tls = none
helo = shivneri.bench
spawn = yes
max_in_flight = ${SMTP_BENCH_MAX_IN_FLIGHT:-64}
EOC
}
