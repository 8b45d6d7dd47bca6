#!/usr/bin/env bash
# Valgrind (memcheck, full leak check) over every unit test, then over a
# short server session: serve under valgrind with two supervised maildir
# agents, and an smtp agent started by hand, also under valgrind, relaying
# to Postfix's smtp-sink; 20 messages submitted over /v1, 10 over SMTP (one
# pipelined session and single ones), one each through the SendGrid and
# Mailgun drop-ins, all delivered, some through each agent; SIGTERM to the
# agent and the server, exit status 0 and no error from either.  Suppressions for the libraries' one-time allocations live in
# scripts/valgrind.supp.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
supp="$root/scripts/valgrind.supp"
vg=(valgrind -q --error-exitcode=99 --leak-check=full
    --errors-for-leak-kinds=definite,indirect --suppressions="$supp")
status=0
for t in "$build"/test_*; do
	[ -x "$t" ] || continue
	if "${vg[@]}" "$t" >"$t.vg.log" 2>&1; then
		echo "valgrind: $(basename "$t") clean"
	else
		echo "valgrind: $(basename "$t") FAILED"; tail -60 "$t.vg.log"; status=1
	fi
done

# The server.
bin=$(cd "$build" && pwd)/shivneri
work=$(mktemp -d)
trap 'kill -9 $spid $wpid $epid $kpid $gpid 2>/dev/null || true; rm -rf "$work"' EXIT
port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
hp=$(port); ap=$(port); sp=$(port); wp=$(port); kp=$(port)
# An answer of the server, whole, into $work/got: grep -q on a pipe stops
# reading at its match, and under pipefail curl's broken pipe fails it.
get() { curl -sf "http://127.0.0.1:$hp$1" >"$work/got"; }
# The smtp agent's smarthost: Postfix's sink, which takes everything.
smtp-sink -u postfix -h sink.vg "127.0.0.1:$kp" 64 2>"$work/sink.log" &
kpid=$!
disown "$kpid"
# A webhook receiver that answers 204 and keeps what it got.
/usr/bin/python3 - "$wp" "$work/hooks" <<'EOP' &
import http.server, sys
out = open(sys.argv[2], "ab", buffering=0)
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        out.write(self.rfile.read(int(self.headers["Content-Length"])) + b"\n")
        self.send_response(204); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
EOP
wpid=$!
disown "$wpid" # killed at exit, without a "Killed" line
cat >"$work/c.ini" <<EOT
[server]
data_dir = $work/data
http_listen = 127.0.0.1:$hp
webhook_url = http://127.0.0.1:$wp/hook
smtp_listen = 127.0.0.1:$sp
agent_listen = 127.0.0.1:$ap
heartbeat_interval_ms = 200
heartbeat_timeout_ms = 2000
[provider.a]
type = maildir
spawn = yes
[provider.b]
type = maildir
spawn = yes
[provider.s]
type = smtp
spawn = no
host = 127.0.0.1
port = $kp
tls = none
helo = vg.test
EOT
"${vg[@]}" --log-file="$work/vg.log" "$bin" serve -c "$work/c.ini" 2>"$work/serve.log" &
spid=$!
ok=0
for _ in $(seq 300); do
	if curl -sf "http://127.0.0.1:$hp/readyz" >/dev/null; then ok=1; break; fi
	sleep 0.1
done
[ $ok = 1 ] || { echo "valgrind: server never ready"; tail -20 "$work/serve.log"; exit 1; }
"${vg[@]}" --log-file="$work/vg-agent.log" "$bin" agent -c "$work/c.ini" -p s \
	--server "127.0.0.1:$ap" 2>"$work/agent.log" &
gpid=$!
ok=0
for _ in $(seq 300); do
	if curl -sf "http://127.0.0.1:$hp/v1/providers" |
		/usr/bin/python3 -c 'import json,sys; p={x["name"]: x["state"] for x in json.load(sys.stdin)["providers"]}; sys.exit(p.get("s") != "up")'; then
		ok=1; break
	fi
	sleep 0.1
done
[ $ok = 1 ] || { echo "valgrind: smtp agent never up"; tail -20 "$work/agent.log"; exit 1; }
# An event stream open for the whole session; SIGTERM ends it.
curl -sN "http://127.0.0.1:$hp/v1/events" >"$work/events" 2>/dev/null &
epid=$!
disown "$epid"
for i in $(seq 20); do
	curl -sf -X POST "http://127.0.0.1:$hp/v1/messages" -H 'Content-Type: application/json' \
		-d "{\"from\":\"a@example.com\",\"to\":\"b@example.net\",\"subject\":\"vg $i\",\"text\":\"x\"}" >/dev/null
done
/usr/bin/python3 - "$sp" <<'EOP' || { echo "valgrind: SMTP submission failed"; status=1; }
import smtplib, sys
msg = "From: a@example.com\r\nTo: b@example.net\r\nSubject: vg smtp\r\n\r\nx\r\n"
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60) as s:
    for _ in range(5):
        s.sendmail("a@example.com", ["b@example.net"], msg)
for _ in range(5):
    with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=60) as s:
        s.sendmail("a@example.com", ["b@example.net"], msg)
EOP
curl -sf -X POST "http://127.0.0.1:$hp/v3/mail/send" -H 'Content-Type: application/json' \
	-d '{"personalizations":[{"to":[{"email":"b@example.net"}]}],"from":{"email":"a@example.com"},"subject":"vg sg","content":[{"type":"text/plain","value":"x"}]}' >/dev/null ||
	{ echo "valgrind: sendgrid drop-in refused"; status=1; }
curl -sf "http://127.0.0.1:$hp/v3/example.com/messages" -u api:none -F from=a@example.com \
	-F to=b@example.net -F subject='vg mg' -F text=x >/dev/null ||
	{ echo "valgrind: mailgun drop-in refused"; status=1; }
ok=0
for _ in $(seq 300); do
	if get /v1/stats && grep -q '"delivered":32' "$work/got"; then ok=1; break; fi
	sleep 0.1
done
[ $ok = 1 ] || { echo "valgrind: messages not delivered"; status=1; }
curl -sf "http://127.0.0.1:$hp/v1/providers" | /usr/bin/python3 -c '
import json, sys
d = {x["name"]: x["delivered"] for x in json.load(sys.stdin)["providers"]}
sys.exit(0 if d.get("s", 0) > 0 else 1)' || { echo "valgrind: nothing went through the smtp agent"; status=1; }
# The queue, the metrics and the console's page.
{ get "/v1/messages?status=delivered&limit=5" && grep -q '"next"' "$work/got"; } ||
	{ echo "valgrind: queue listing failed"; status=1; }
{ get /metrics && grep -q '^shivneri_store_commit_seconds_count' "$work/got"; } ||
	{ echo "valgrind: metrics failed"; status=1; }
{ get / && grep -qi '<html' "$work/got"; } || { echo "valgrind: console page failed"; status=1; }
ok=0
for _ in $(seq 300); do
	if [ "$(grep -c 'message.delivered' "$work/hooks" 2>/dev/null)" -ge 32 ] &&
		[ "$(grep -c '^event: message.delivered' "$work/events" 2>/dev/null)" -ge 32 ]; then ok=1; break; fi
	sleep 0.1
done
[ $ok = 1 ] || { echo "valgrind: webhooks or events missing"; status=1; }
kill -TERM $gpid
rc=0; wait $gpid || rc=$?
if [ $rc -ne 0 ] || [ -s "$work/vg-agent.log" ]; then
	echo "valgrind: smtp agent FAILED (exit $rc)"; cat "$work/vg-agent.log"; tail -20 "$work/agent.log"; status=1
else
	echo "valgrind: smtp agent clean (its messages relayed to smtp-sink, SIGTERM, exit 0)"
fi
kill -TERM $spid
rc=0; wait $spid || rc=$?
if [ $rc -ne 0 ] || [ -s "$work/vg.log" ]; then
	echo "valgrind: serve FAILED (exit $rc)"; cat "$work/vg.log"; status=1
else
	echo "valgrind: serve session clean (32 messages over HTTP, SMTP and the drop-ins delivered, their events streamed and webhooks sent, queue, metrics and console read, SIGTERM, exit 0)"
fi
exit $status
