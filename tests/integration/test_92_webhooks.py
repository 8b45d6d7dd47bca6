"""Signed webhooks from a durable outbox (issue 10, docs/webhooks.md).

A local receiver (127.0.0.1) records every POST.  The tests check that a
delivered and a failed message and a provider going down and up each
arrive with a signature that the Python and Node snippets of
docs/webhooks.md accept (and reject under a wrong secret); that a
receiver that is down, then up, gets every webhook; that a kill -9 of the
server with webhooks pending loses none across a restart; that a hanging
receiver does not slow mail; that a message failed at load as a corrupt
record gets its webhook and its event; that a row older than
webhook_max_age_s is dropped rather than sent again; and that the secret
is made 0600 and never shows in a log or /metrics."""

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import pytest

import shivneri_harness as h

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                    "docs", "webhooks.md")


class Receiver:
    """A webhook receiver on a fixed loopback port that can go down and
    come back.  mode: "ok" (200), "fail" (500) or "hang" (no answer until
    release(), bounded)."""

    def __init__(self):
        self.port = h.free_port()
        self.mode = "ok"
        # (headers dict, body bytes, status) of every request, across
        # every server started on the port.
        self.got = []
        self.lock = threading.Lock()
        self.unhang = threading.Event()
        self.srv = None

    def start(self):
        self.srv = h.StandIn(self._reply, port=self.port)

    def _reply(self, req):
        with self.lock:
            mode = self.mode
        if mode == "hang":
            self.unhang.wait(timeout=60)
            mode = "ok"
        code = 200 if mode == "ok" else 500
        with self.lock:
            self.got.append((req.headers, req.body, code))
        return code, b""

    def stop(self):
        if self.srv is not None:
            self.srv.close()
            self.srv = None

    def requests(self):
        with self.lock:
            return list(self.got)

    def bodies(self):
        """The bodies of the requests answered 200."""
        return [json.loads(b) for _, b, code in self.requests()
                if code == 200]

    def find(self, pred):
        """(headers, body) of the requests answered 200 that pred takes."""
        return [(hd, b) for hd, b, code in self.requests()
                if code == 200 and pred(json.loads(b))]

    @property
    def url(self):
        return "http://127.0.0.1:%d/hook?token=sekrit-token" % self.port


def snippet(marker):
    """The code block after <!-- marker --> in docs/webhooks.md."""
    with open(DOCS) as f:
        text = f.read()
    m = re.search(r"<!-- %s -->\n```[a-z]+\n(.*?)```" % marker, text, re.S)
    assert m, "no %s snippet in docs/webhooks.md" % marker
    return m.group(1)


def py_verify(secret, header, body):
    ns = {}
    exec(snippet("verify-python"), ns)  # noqa: S102 - our own docs
    return ns["verify"](secret, header, body)


def node_verify(tmp, secret, header, body):
    """Runs the docs' Node snippet; None when node is not installed."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        return None
    paths = {}
    for name, data in (("secret", secret), ("header", header.encode()),
                       ("body", body)):
        paths[name] = os.path.join(tmp, "node-" + name)
        with open(paths[name], "wb") as f:
            f.write(data)
    script = snippet("verify-node") + (
        "\nconst fs = require('fs');\n"
        "const ok = verify(fs.readFileSync(%r), "
        "fs.readFileSync(%r, 'utf8'), fs.readFileSync(%r));\n"
        "process.stdout.write(ok ? 'valid' : 'invalid');\n" %
        (paths["secret"], paths["header"], paths["body"]))
    out = subprocess.run([node, "-e", script], capture_output=True,
                         timeout=30, check=True)
    return out.stdout.decode()


def secret_of(c):
    with open(os.path.join(c.data_dir, "webhook.secret"), "rb") as f:
        return f.read().rstrip(b"\n")


def server_extra(rec, **kw):
    extra = {"webhook_url": rec.url, "webhook_timeout_ms": 1000,
             "webhook_retry_max_ms": 400, "max_attempts": 1}
    extra.update(kw)
    return extra


def wait_webhook(rec, pred, what, timeout=15):
    return h.wait_for(lambda: rec.find(pred), timeout, what)


def metric(c, name):
    r = c.get("/metrics")
    assert r.status == 200, r
    m = re.search(r"^%s (\S+)$" % re.escape(name), r.body.decode(), re.M)
    return float(m.group(1)) if m else None


@pytest.fixture(scope="module")
def env(module_cluster_factory):
    rec = Receiver()
    rec.start()
    # Agents by hand, so a test can stop one; a heartbeat timeout long
    # enough for a job to reach a stopped agent before it is down.
    c = module_cluster_factory(providers=("a",), server_extra=server_extra(
        rec, heartbeat_timeout_ms=2000))
    c.start_server()
    c.start_agent("a")
    yield c, rec
    rec.unhang.set()
    rec.stop()


def test_delivered_signed_and_verified(env, tmp_path):
    c, rec = env
    mid = c.submit()
    c.wait_delivered([mid])
    hits = wait_webhook(rec, lambda b: b.get("id") == mid and
                        b["type"] == "message.delivered",
                        "the delivered webhook")
    hd, body = hits[0]
    b = json.loads(body)
    assert b["provider"] == "a" and b["attempts"] == 1, b
    assert hd["content-type"] == "application/json", hd
    assert hd["shivneri-webhook-id"] == b["webhook_id"], (hd, b)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", b["webhook_id"]), b
    secret = secret_of(c)
    sig = hd["shivneri-signature"]
    assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", sig), sig
    assert py_verify(secret, sig, body) is True
    assert py_verify(b"wrong-secret-wrong-secret", sig, body) is False
    assert py_verify(secret, sig, body + b" ") is False
    got = node_verify(str(tmp_path), secret, sig, body)
    if got is not None:
        assert got == "valid", got
        assert node_verify(str(tmp_path), b"wrong-secret-wrong", sig,
                           body) == "invalid"


def test_failed_message_and_provider_down_up(env):
    c, rec = env
    # A job to an agent that stopped answering is lost when the heartbeat
    # times out (provider.down); max_attempts = 1 fails the message.  The
    # agent comes back (provider.up).
    c.wait_state("a", "up")
    n0 = len(rec.requests())
    agent = c.agents["a"]
    agent.signal(signal.SIGSTOP)
    try:
        mid = c.submit()

        def failed():
            m = c.msg(mid)
            return m if m["status"] == "failed" else None
        m = h.wait_for(failed, 15, "the message to fail")
    finally:
        agent.signal(signal.SIGCONT)
    c.wait_state("a", "up", timeout=15)
    hits = wait_webhook(rec, lambda b: b.get("id") == mid and
                        b["type"] == "message.failed", "the failed webhook")
    hd, body = hits[0]
    b = json.loads(body)
    assert b["error"] == m["error"], (b, m)
    assert b["provider"] == "a" and b["attempts"] == 1, b
    assert py_verify(secret_of(c), hd["shivneri-signature"], body)
    down = wait_webhook(rec, lambda b: b["type"] == "provider.down" and
                        b["provider"] == "a", "provider.down")
    assert json.loads(down[0][1])["state"] == "down"
    assert json.loads(down[0][1]).get("reason"), down
    wait_webhook(rec, lambda b: b["type"] == "provider.up" and
                 b["provider"] == "a" and b["at"] > json.loads(
                     down[0][1])["at"], "provider.up after the down")
    assert len(rec.requests()) >= n0 + 3


def test_provider_disabled_enabled(env):
    c, rec = env
    c.wait_state("a", "up")
    n0 = len(rec.requests())
    c.post("/v1/providers/a/disable")
    c.wait_state("a", "disabled")
    c.post("/v1/providers/a/enable")
    c.wait_state("a", "up")
    wait_webhook(rec, lambda b: b["type"] == "provider.disabled" and
                 b["provider"] == "a", "provider.disabled")
    wait_webhook(rec, lambda b: b["type"] == "provider.enabled" and
                 b["provider"] == "a", "provider.enabled")
    assert len(rec.requests()) > n0


def test_receiver_down_then_up_all_arrive(env):
    c, rec = env
    rec.mode = "fail"
    fails0 = metric(c, "shivneri_webhook_failures_total")
    ids = [c.submit() for _ in range(5)]
    c.wait_delivered(ids)
    h.wait_for(lambda: metric(c, "shivneri_webhook_failures_total") >=
               fails0 + 5, 15, "failed tries to be counted")
    rec.stop()  # down: connections refused from here
    h.wait_for(lambda: metric(c, "shivneri_webhook_failures_total") >=
               fails0 + 10, 15, "tries against a receiver that is down")
    rec.mode = "ok"
    rec.start()
    # Retries wait at most webhook_retry_max_ms (400) and a pass follows
    # within 100 ms, so all arrive within about half a second.
    for mid in ids:
        wait_webhook(rec, lambda b, mid=mid: b.get("id") == mid and
                     b["type"] == "message.delivered",
                     "the webhook of %s after the receiver came back" % mid,
                     timeout=1.5)
    h.wait_for(lambda: metric(c, "shivneri_webhook_outbox") == 0, 15,
               "the outbox to empty")
    assert metric(c, "shivneri_webhooks_sent_total") >= 5


def test_hanging_receiver_does_not_delay_mail(env):
    c, rec = env
    rec.unhang.clear()
    rec.mode = "hang"
    try:
        ids = [c.submit() for _ in range(20)]
        t0 = time.monotonic()
        # Every webhook slot is stuck on the receiver by now, yet mail
        # flows: all 20 delivered well within the receiver's hang.
        c.wait_delivered(ids, timeout=10)
        assert time.monotonic() - t0 < h.scaled(10)
        h.wait_for(lambda: metric(c, "shivneri_webhooks_in_flight") > 0, 10,
                   "webhooks stuck in flight")
    finally:
        rec.mode = "ok"
        rec.unhang.set()
    for mid in ids:
        wait_webhook(rec, lambda b, mid=mid: b.get("id") == mid, "webhook "
                     "of %s once the receiver answers" % mid, timeout=30)


def test_secret_file_private_and_never_shown(env):
    c, rec = env
    path = os.path.join(c.data_dir, "webhook.secret")
    assert os.stat(path).st_mode & 0o777 == 0o600
    secret = secret_of(c)
    assert len(secret) >= 32
    body = c.get("/metrics").body
    assert secret not in body
    for p in c.procs:
        with open(p.log_path, "rb") as f:
            log = f.read()
        assert secret not in log, p.log_path
        assert b"sekrit-token" not in log, p.log_path


def test_kill9_with_webhooks_pending_loses_none(make_cluster):
    rec = Receiver()  # not started: connections refused
    c = make_cluster(providers=("a",), spawn=True,
                     server_extra=server_extra(rec))
    try:
        c.start_server()
        c.wait_state("a", "up")
        ids = [c.submit() for _ in range(8)]
        c.wait_delivered(ids)
        # The outcomes are durable, so are their webhooks; none arrived.
        c.server.kill9()
        rec.start()
        c.start_server()
        for mid in ids:
            wait_webhook(rec, lambda b, mid=mid: b.get("id") == mid and
                         b["type"] == "message.delivered",
                         "the webhook of %s after the restart" % mid,
                         timeout=30)
        # Duplicates only as documented: the same webhook_id again.
        per_msg = {}
        for b in rec.bodies():
            if b.get("type") == "message.delivered":
                per_msg.setdefault(b["id"], set()).add(b["webhook_id"])
        assert all(len(per_msg[m]) == 1 for m in ids), per_msg
    finally:
        rec.stop()


def events_history(c, pred, what, timeout=15):
    """Reads GET /v1/events from the start of the hub's history until an
    event's data takes pred; that data."""
    s = socket.create_connection(("127.0.0.1", c.http_port),
                                 timeout=h.scaled(2))
    try:
        s.sendall(b"GET /v1/events HTTP/1.1\r\nHost: t\r\n"
                  b"Last-Event-ID: 0\r\n\r\n")
        data = b""
        deadline = time.monotonic() + h.scaled(timeout)
        while time.monotonic() < deadline:
            for line in data.split(b"\n"):
                if line.startswith(b"data: "):
                    ev = json.loads(line[6:])
                    if pred(ev):
                        return ev
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            assert chunk, "the event stream closed: %r" % data[-500:]
            data += chunk
        raise h.WaitTimeout("no %s in /v1/events" % what)
    finally:
        s.close()


def test_corrupt_record_failed_with_webhook_and_event(make_cluster):
    """A queued row the store cannot read is failed at load like any final
    outcome: its message.failed webhook carries the store's error, the hub
    publishes message.failed, the counts follow, and the good message
    queued beside it is delivered."""
    rec = Receiver()
    rec.start()
    c = make_cluster(providers=("a",), server_extra=server_extra(rec))
    try:
        c.start_server()
        # No agent yet: both stay queued.
        bad, good = c.submit(), c.submit()
        assert c.msg(bad)["status"] == "queued"
        c.server.kill9()
        db = sqlite3.connect(os.path.join(c.data_dir, "shivneri.db"))
        with db:
            n = db.execute("UPDATE messages SET rcpt = 'not json'"
                           " WHERE id = ?", (bad,)).rowcount
        db.close()
        assert n == 1
        c.start_server()
        c.start_agent("a")
        hits = wait_webhook(rec, lambda b: b.get("id") == bad and
                            b["type"] == "message.failed",
                            "the corrupt message's failed webhook")
        hd, body = hits[0]
        b = json.loads(body)
        assert b["error"] == "corrupt record: bad rcpt", b
        assert py_verify(secret_of(c), hd["shivneri-signature"], body)
        ev = events_history(c, lambda e: e.get("id") == bad,
                            "the corrupt message's event")
        assert ev["type"] == "message.failed", ev
        assert ev["error"] == "corrupt record: bad rcpt", ev
        c.wait_delivered([good])
        wait_webhook(rec, lambda b: b.get("id") == good and
                     b["type"] == "message.delivered", "the good webhook")
        h.wait_for(lambda: c.stats().get("failed") == 1, 15,
                   "the failed count")
        assert c.stats()["queued"] == 0, c.stats()
    finally:
        rec.stop()


def test_rows_past_max_age_dropped(make_cluster):
    """A receiver that answers 500 for ever: a row older than
    webhook_max_age_s is dropped at its next try instead of sent again,
    counted with the cap's drops and logged; younger rows are still
    retried.  The minimum age is 60 s, so the rows are aged on disk while
    the server is down (their created_ms moved back two minutes)."""
    rec = Receiver()
    rec.mode = "fail"
    rec.start()
    c = make_cluster(providers=("a",), spawn=True, server_extra=server_extra(
        rec, webhook_max_age_s=60))
    try:
        c.start_server()
        c.wait_state("a", "up")
        old = [c.submit() for _ in range(3)]
        c.wait_delivered(old)

        def tries(ids):
            return sum(1 for _, b, _ in rec.requests()
                       if json.loads(b).get("id") in ids)
        h.wait_for(lambda: tries(old) >= 6, 15, "refused tries of the old")
        c.server.kill9()
        db = sqlite3.connect(os.path.join(c.data_dir, "shivneri.db"))
        with db:
            # next_ms 0: due at once, not after the killed server's lease.
            n = db.execute("UPDATE outbox SET created_ms = created_ms -"
                           " 120000, next_ms = 0").rowcount
        db.close()
        # The three outcomes, and the provider's events (a.up...).
        assert n >= 3, n
        c.start_server()
        c.wait_state("a", "up")
        young = [c.submit() for _ in range(2)]
        c.wait_delivered(young)
        h.wait_for(lambda: metric(
            c, "shivneri_webhook_outbox_dropped_total") == n, 15,
            "the aged rows dropped")
        n_old, n_young = tries(old), tries(young)
        # The young keep being tried (and refused) while the old are not.
        h.wait_for(lambda: tries(young) >= n_young + 4, 15,
                   "more tries of the young rows")
        assert tries(old) == n_old, (n_old, tries(old))
        assert metric(c, "shivneri_webhook_outbox_dropped_total") == n
        assert metric(c, "shivneri_webhook_outbox") >= 2
        with open(c.server.log_path, "rb") as f:
            log = f.read()
        assert re.search(rb"store - outbox_expired dropped=\d+ total=%d "
                         rb"max_age_ms=60000" % n, log), log[-2000:]
    finally:
        rec.stop()


def test_bad_webhook_url_refused(make_cluster):
    for url in ("ftp://127.0.0.1/x", "http://", "http://u:p@127.0.0.1/x",
                "http://127.0.0.1/a b"):
        c = make_cluster(providers=("a",),
                         server_extra={"webhook_url": url})
        out = subprocess.run([h.BIN, "check-config", "-c", c.config_path],
                             capture_output=True, timeout=30)
        assert out.returncode == 2, (url, out)
        err = out.stdout + out.stderr
        assert b"webhook_url" in err, err
        assert b"u:p@" not in err, err


def test_provider_webhook_outlives_a_failing_disk(make_cluster):
    """A provider's webhook goes into the outbox on its own write, not in
    a transaction of the dispatcher's (which retries its own).  While the
    disk fails (RLIMIT_FSIZE of 1 byte on the server) that write fails;
    the webhook must be written once the disk is back, not lost without
    a count."""
    import resource

    rec = Receiver()
    rec.start()
    try:
        c = make_cluster(providers=("a",), server_extra=server_extra(rec))
        c.start_server()
        c.start_agent("a")
        wait_webhook(rec, lambda b: b["type"] == "provider.up",
                     "provider.up")
        pid = c.server.pid
        old = resource.prlimit(pid, resource.RLIMIT_FSIZE)
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, old[1]))
        try:
            c.agents["a"].kill9()
            c.wait_state("a", "down")

            # The log cannot say so (its file is limited too): the
            # store's failed write shows on /readyz.
            def add_failed():
                r = c.get("/readyz")
                return r.status == 503 and any(
                    x.startswith("store not writable")
                    for x in r.json["reasons"])
            h.wait_for(add_failed, 15, "the provider.down write to fail")
        finally:
            resource.prlimit(pid, resource.RLIMIT_FSIZE, old)
        wait_webhook(rec, lambda b: b["type"] == "provider.down" and
                     b["provider"] == "a", "provider.down once the disk "
                     "is back")
        assert metric(c, "shivneri_webhook_outbox_dropped_total") == 0
    finally:
        rec.stop()
