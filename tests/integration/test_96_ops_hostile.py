"""A hostile party against the operator's surfaces: the console's API, the
drop-ins and the webhooks.

- Another site's page in the operator's browser (the embedded default has
  no API key, so the browser itself is the credential): its POSTs, as a
  browser sends them (Sec-Fetch-Site: cross-site, or only an Origin of
  another host), are refused 403 on every route that changes something:
  a provider disable, a retry, a message through the Mailgun drop-in.
  Nothing changes (the provider stays up, no message is stored), and the
  refusals are logged with a limit.  Clients that are not browsers, and
  the console's own same-origin requests, go through as before.
- The same in Debian's chromium: a page of another site (served on
  localhost, the server being 127.0.0.1) that posts a form to disable a
  provider and fetch()es mail into the Mailgun drop-in gets 403 for both.
- The console: a #/message/ link with a broken %-escape shows "no
  message", not a blank page.
- DNS rebinding: without api_keys_file, a browser that names this server
  by a name (a page of evil.example rebound to 127.0.0.1 is same-origin
  with it) reads nothing of /v1; by its address it does.  With keys the
  name is no matter (the attacker has no key).
- The queue API against a RESULT in flight: a message failed after its
  job timed out at an agent that still holds it is retried while that
  agent's late RESULT arrives.  The late RESULT changes nothing, the retry
  sends it again and it is delivered once more on record: the first try
  stays "lost" (the possible duplicate is explained), the provider counts
  one delivery, and a retry of a message in flight or delivered is 409.
- Secrets: a provider (or a proxy before it) that echoes the request's
  headers in its refusal: its words reach the attempt's detail, the
  provider's reason, the events and the logs, but the API key does not,
  neither as sent in a header (Bearer) nor as Basic's base64.
- Webhooks: a receiver that answers 200 and then sends a page past the
  body cap, cuts its answer short, or trickles it past the timeout took
  the webhook: it is sent once, not again and again until
  webhook_max_age_s.
"""

import base64
import glob
import json
import os
import re
import socket
import threading

import pytest

import shivneri_harness as h
from test_32_job_timeout import RESULT, silent
from test_95_console import Browser, needs_browser

CROSS = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
         "Origin": "https://evil.example"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def metric(c, name):
    r = c.get("/metrics")
    assert r.status == 200, r
    m = re.search(r"^%s (\S+)$" % re.escape(name), r.body.decode(), re.M)
    return float(m.group(1)) if m else None


def log_text(c):
    with open(c.server.log_path, "rb") as f:
        return f.read().decode("utf-8", "replace")


@pytest.fixture(scope="module")
def open_cluster(module_cluster_factory):
    """The embedded default's shape: no api_keys_file."""
    c = module_cluster_factory(providers=("a",), spawn=True)
    c.start_server()
    c.wait_state("a", "up")
    return c


def answer_head(port, request):
    """The head of the server's answer to a hand-made request."""
    s = socket.create_connection(("127.0.0.1", port),
                                 timeout=h.scaled(10))
    try:
        s.sendall(request)
        got = b""
        while b"\r\n\r\n" not in got:
            d = s.recv(4096)
            assert d, got
            got += d
        return got.split(b"\r\n\r\n", 1)[0]
    finally:
        s.close()


def test_every_answer_says_nosniff(open_cluster):
    """A JSON answer may quote a client's words: no browser may sniff it
    into a page.  Every kind of answer says so, once: a 202, an error, a
    console file, the event stream's head."""
    c = open_cluster
    msg = json.dumps(h.message(1)).encode()
    for req in (b"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d"
                b"\r\n\r\n%s" % (len(msg), msg),
                b"GET /v1/messages/nope HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n"):
        head = answer_head(c.http_port, req)
        n = head.lower().count(b"\r\nx-content-type-options: nosniff")
        assert n == 1, head


def test_scrape_burst_asks_the_store_once(open_cluster):
    """/metrics takes no key: a burst of scrapes must not become a burst
    of store queries.  Sixty scrapes sent at once, on sixty connections,
    share the one query out and its text (each was an operation of the
    store's and a text of its own); each is answered in full."""
    c = open_cluster
    port = c.http_port
    before = metric(c, "shivneri_store_commit_batch_size_sum")
    socks = [socket.create_connection(("127.0.0.1", port),
                                      timeout=h.scaled(10))
             for _ in range(60)]
    try:
        for s in socks:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
                      b"Connection: close\r\n\r\n")
        for s in socks:
            got = b""
            while True:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            assert got.startswith(b"HTTP/1.1 200 "), got[:200]
            assert b"\nshivneri_store_commit_batch_size_count " in got
    finally:
        for s in socks:
            s.close()
    after = metric(c, "shivneri_store_commit_batch_size_sum")
    # The last scrape's own query is one more; other work adds a few.
    assert after - before <= 20, (before, after)


def test_cross_site_disable_refused(open_cluster):
    c = open_cluster
    port = c.http_port
    # A <form method=post> of another site: a body, Sec-Fetch-Site.
    r = h.http(port, "POST", "/v1/providers/a/disable", body=b"x=1",
               headers=dict(CROSS, **FORM))
    h.assert_error(r, 403, ("forbidden",))
    assert c.provider("a")["state"] == "up"
    # An older browser sends only the Origin; "null" from a sandbox.
    for origin in ("https://evil.example", "null",
                   "http://127.0.0.1:%d" % (port + 1)):
        r = h.http(port, "POST", "/v1/providers/a/disable",
                   headers={"Origin": origin})
        h.assert_error(r, 403, ("forbidden",))
    # A same-site neighbour is another origin too.
    r = h.http(port, "POST", "/v1/providers/a/disable",
               headers={"Sec-Fetch-Site": "same-site"})
    h.assert_error(r, 403, ("forbidden",))
    assert c.provider("a")["state"] == "up"


def test_cross_site_retry_and_dropin_refused(open_cluster):
    c = open_cluster
    port = c.http_port
    before = c.stats()
    r = h.http(port, "POST", "/v1/messages/01M8PA34M89EQAX8CABFK18ZGE/retry",
               headers=CROSS)
    h.assert_error(r, 403, ("forbidden",))
    # Mail through the Mailgun drop-in from a form: no key needed without
    # api_keys_file, and a form is what a page may post anywhere.
    body = b"from=a%40x.test&to=b%40y.test&subject=csrf&text=hi"
    r = h.http(port, "POST", "/v3/mg.example/messages", body=body,
               headers=dict(CROSS, **FORM))
    h.assert_error(r, 403, ("forbidden",))
    r = h.http(port, "POST", "/v3/mg.example/messages", body=body,
               headers=dict({"Origin": "https://evil.example"}, **FORM))
    h.assert_error(r, 403, ("forbidden",))
    assert c.stats() == before


def test_same_origin_and_non_browsers_pass(open_cluster):
    c = open_cluster
    port = c.http_port
    me = "http://127.0.0.1:%d" % port
    # The console's own fetch(), and a URL typed by hand.
    r = h.http(port, "POST", "/v1/providers/a/disable",
               headers={"Sec-Fetch-Site": "same-origin", "Origin": me})
    assert r.status == 200 and r.json["state"] == "disabled", r
    r = h.http(port, "POST", "/v1/providers/a/enable",
               headers={"Origin": me})
    assert r.status == 200 and r.json["state"] != "disabled", r
    c.wait_state("a", "up")
    # curl, an SDK: no browser headers, any Host.
    mid = c.submit(headers={"Host": "relay.example.com"})
    c.wait_delivered([mid])
    body = b"from=a%40x.test&to=b%40y.test&subject=ok&text=hi"
    r = h.http(port, "POST", "/v3/mg.example/messages", body=body,
               headers=FORM)
    assert r.status == 200, r
    # A link to the console from anywhere still opens it.
    r = h.http(port, "GET", "/", headers=CROSS)
    assert r.status == 200, r


def test_rebinding_reads_nothing_without_keys(open_cluster):
    c = open_cluster
    port = c.http_port
    rebound = {"Host": "evil.example:%d" % port,
               "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}
    for path in ("/v1/messages", "/v1/providers", "/v1/events",
                 "/v1/stats"):
        r = h.http(port, "GET", path, headers=rebound)
        h.assert_error(r, 403, ("forbidden",))
    r = h.http(port, "POST", "/v1/providers/a/disable",
               headers=dict(rebound, Origin="http://evil.example:%d" % port))
    h.assert_error(r, 403, ("forbidden",))
    assert c.provider("a")["state"] == "up"
    for host in ("127.0.0.1:%d" % port, "localhost:%d" % port):
        r = h.http(port, "GET", "/v1/providers",
                   headers={"Host": host, "Sec-Fetch-Site": "same-origin"})
        assert r.status == 200, r


def test_refusals_logged_with_a_limit(open_cluster):
    c = open_cluster
    for _ in range(40):
        r = h.http(c.http_port, "POST", "/v1/providers/a/disable",
                   headers=CROSS)
        assert r.status == 403, r
    h.wait_for(lambda: "origin_refused" in log_text(c), 5,
               "the refusal's log line")
    lines = [ln for ln in log_text(c).splitlines()
             if "origin_refused" in ln]
    # Every test above refused too: one line per 10 s, with a count.
    assert 1 <= len(lines) <= 3, lines
    assert "reason=cross_site" in lines[0] or "not_an_address" in lines[0]


def test_rebinding_no_matter_with_keys(make_cluster):
    c = make_cluster(providers=("a",), spawn=True)
    keys = os.path.join(c.dir, "api-keys")
    c.write_secret(keys, "k-ops-96")
    c.server_extra["api_keys_file"] = keys
    c.write_config()
    c.start_server()
    auth = {"Authorization": "Bearer k-ops-96"}
    r = h.http(c.http_port, "GET", "/v1/providers",
               headers=dict(auth, Host="relay.example.com",
                            **{"Sec-Fetch-Site": "same-origin"}))
    assert r.status == 200, r
    # A cross-site POST is refused even with the key's header (a page
    # cannot send it, but the rule does not depend on that).
    r = h.http(c.http_port, "POST", "/v1/providers/a/disable",
               headers=dict(auth, **CROSS))
    h.assert_error(r, 403, ("forbidden",))


class EvilSite:
    """Another site's page on localhost:PORT (the server is 127.0.0.1, a
    different site to the browser): it posts a form that disables
    provider a and, with fetch() in no-cors mode, a form of mail to the
    Mailgun drop-in, as an attacker's page would."""

    def __init__(self, target_port):
        page = ("<!doctype html><title>cat pictures</title>"
                "<form id=f method=post action='http://127.0.0.1:%d"
                "/v1/providers/a/disable'><input name=x value=1></form>"
                "<script>fetch('http://127.0.0.1:%d/v3/mg.example/messages',"
                "{method:'POST',mode:'no-cors',body:new URLSearchParams("
                "{from:'a@x.test',to:'b@y.test',subject:'csrf',text:'hi'})})"
                ".finally(()=>document.getElementById('f').submit());"
                "</script>" % (target_port, target_port)).encode()

        self.srv = h.StandIn(lambda req: (200, page, "text/html"))
        self.port = self.srv.port

    def close(self):
        self.srv.close()


@needs_browser
def test_cross_site_page_in_chromium(open_cluster):
    c = open_cluster
    c.wait_state("a", "up")
    before = c.stats()
    evil = EvilSite(c.http_port)
    b = Browser(os.path.join(c.dir, "browser-96.log"))
    try:
        b("open", url="http://localhost:%d/" % evil.port)
        got = {}
        for path in ("/v3/mg.example/messages", "/v1/providers/a/disable"):
            rs = b("responses", path=path)["responses"]
            got[path] = [r["status"] for r in rs if r["url"].startswith(
                "http://127.0.0.1:%d%s" % (c.http_port, path))]
        assert got == {"/v3/mg.example/messages": [403],
                       "/v1/providers/a/disable": [403]}, got
    finally:
        b.close()
        evil.close()
    assert c.provider("a")["state"] == "up"
    assert c.stats() == before


@needs_browser
def test_console_broken_link_says_so(open_cluster):
    """A #/message/ link with a broken %-escape (anyone can send one) shows
    the API's "no message" instead of a blank page and a script error."""
    c = open_cluster
    b = Browser(os.path.join(c.dir, "browser-96b.log"))
    try:
        b("open", url="http://127.0.0.1:%d/#/message/%%E0%%A4%%A" %
          c.http_port)
        got = b("text", selector="#message .error")["text"]
        assert "no message with that id" in got, got
        assert b("errors")["errors"] == []
    finally:
        b.close()


def test_retry_races_a_late_result(make_cluster):
    c = make_cluster(providers=("a",), server_extra={
        "job_timeout_s": 1, "max_attempts": 1, "breaker_threshold": 100})
    c.start_server()
    fake = silent(c, "a")
    try:
        mid = c.submit()
        h.wait_for(lambda: fake.njobs() >= 1, 10, "the job at the agent")
        job1 = fake.jobs[0]
        h.wait_for(lambda: c.msg(mid)["status"] == "failed", 10,
                   "the message failed by its job's timeout")
        # The operator's retry and the agent's late answer, together.
        late = threading.Thread(target=fake.send, args=(RESULT, {
            "job_id": job1["job_id"], "message_id": mid,
            "outcome": "delivered", "provider_message_id": "late",
            "detail": ""}))
        late.start()
        r = c.post("/v1/messages/%s/retry" % mid)
        late.join(h.scaled(10))
        assert r.status == 200 and r.json["status"] == "queued", r
        h.wait_for(lambda: fake.njobs() >= 2, 10, "the retried job")
        job2 = fake.jobs[1]
        assert job2["message_id"] == mid and \
            job2["job_id"] != job1["job_id"], (job1, job2)
        # In flight now: a second retry is refused and changes nothing.
        r = c.post("/v1/messages/%s/retry" % mid)
        h.assert_error(r, 409, ("not_failed",))
        fake.send(RESULT, {"job_id": job2["job_id"], "message_id": mid,
                           "outcome": "delivered",
                           "provider_message_id": "second", "detail": ""})
        h.wait_for(lambda: c.msg(mid)["status"] == "delivered", 10,
                   "the retried message delivered")
        m = c.msg(mid)
        assert m["provider_message_id"] == "second", m
        assert [(a["provider"], a["outcome"]) for a in m["attempts"]] == \
            [("a", "lost"), ("a", "delivered")], m
        assert m["attempts"][0]["detail"] == "no result", m
        assert c.provider("a")["delivered"] == 1
        h.assert_error(c.post("/v1/messages/%s/retry" % mid), 409,
                       ("not_failed",))
        assert fake.njobs() == 2
    finally:
        fake.close()


class EchoProvider:
    """A provider stand-in that refuses every request with 401 and its
    headers echoed back, in the JSON shape both Mailgun and SendGrid
    answers take ({"message": ..., "errors": [{"message": ...}]})."""

    def __init__(self):
        def reply(req):
            echo = "bad credentials: %r" % dict(req.headers)
            body = json.dumps({"message": echo,
                               "errors": [{"message": echo}]}).encode()
            return 401, body, "application/json"

        self.srv = h.StandIn(reply)
        self.url = self.srv.url

    def close(self):
        self.srv.close()


def test_echoed_key_never_shown(make_cluster):
    echo = EchoProvider()
    c = make_cluster(providers=("a", "mg", "sg"), spawn=True)
    keys = {"mg": "key-mg-" + os.urandom(12).hex(),
            "sg": "SG.sg-" + os.urandom(12).hex()}
    for name, typ in (("mg", "mailgun"), ("sg", "sendgrid")):
        path = os.path.join(c.dir, name + ".key")
        c.write_secret(path, keys[name])
        c.sections[name] = {"type": typ, "spawn": "yes",
                            "api_key_file": path, "base_url": echo.url}
    c.sections["mg"]["domain"] = "mg.example"
    c.write_config()
    forms = list(keys.values()) + [
        base64.b64encode(b"api:" + keys["mg"].encode()).decode()]
    try:
        c.start_server()
        for n in ("a", "mg", "sg"):
            c.wait_state(n, "up")
        # Enough that each of the three is picked.
        ids = [c.submit(h.message(i)) for i in range(6)]
        h.wait_for(lambda: all(c.provider(n)["state"] == "down"
                               for n in ("mg", "sg")), 15,
                   "both refusing providers down")
        c.wait_delivered(ids)
        texts = {"providers": c.get("/v1/providers").body.decode()}
        refused = set()
        for mid in ids:
            m = c.msg(mid)
            texts[mid] = json.dumps(m)
            refused |= {a["provider"] for a in m["attempts"]
                        if "status=401" in (a["detail"] or "")}
        assert refused == {"mg", "sg"}, texts
        ev = socket.create_connection(("127.0.0.1", c.http_port))
        ev.sendall(b"GET /v1/events HTTP/1.1\r\nHost: t\r\n"
                   b"Last-Event-ID: 1\r\n\r\n")
        ev.settimeout(h.scaled(5))
        got = b""
        while b"provider.down" not in got or b"message.delivered" not in got:
            d = ev.recv(65536)
            assert d, got[-500:]
            got += d
        ev.close()
        texts["events"] = got.decode("utf-8", "replace")
    finally:
        echo.close()
        c.kill_all()
    for f in glob.glob(os.path.join(c.dir, "*.log")):
        with open(f, "rb") as fh:
            texts[f] = fh.read().decode("utf-8", "replace")
    # The provider's words did arrive: its refusal, made printable.
    assert "bad credentials" in texts["providers"], texts["providers"]
    for where, text in texts.items():
        for form in forms:
            assert form not in text, (where, form)


# --- webhooks --------------------------------------------------------------


class OddReceiver:
    """A raw webhook receiver on loopback that reads each request whole,
    then answers 200 in one of three odd ways: "huge" (a body four times
    http_multi's 64 KiB cap), "cut" (a Content-Length of 100, 3 bytes,
    close), "trickle" (the head and a byte, then nothing until the
    server's webhook_timeout_ms passed; bounded by stop)."""

    def __init__(self):
        self.mode = "huge"
        self.got = []  # (webhook id, body)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(64)
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,),
                             daemon=True).start()

    def _read(self, conn):
        conn.settimeout(h.scaled(5))
        data = b""
        while b"\r\n\r\n" not in data:
            d = conn.recv(65536)
            if not d:
                return None, None
            data += d
        head, body = data.split(b"\r\n\r\n", 1)
        hdrs = {}
        for ln in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(body) < n:
            d = conn.recv(65536)
            if not d:
                return None, None
            body += d
        return hdrs, body

    def _one(self, conn):
        try:
            hdrs, body = self._read(conn)
            if hdrs is None:
                return
            with self.lock:
                self.got.append((hdrs.get("shivneri-webhook-id"), body))
                mode = self.mode
            if mode == "huge":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 262144\r\n"
                             b"\r\n" + b"x" * 262144)
            elif mode == "cut":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                             b"\r\nabc")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                             b"\r\na")
                self.stop.wait(h.scaled(3))
        except OSError:
            pass
        finally:
            conn.close()

    def ids(self, pred):
        with self.lock:
            return [i for i, b in self.got if pred(json.loads(b))]

    def count(self, wid):
        with self.lock:
            return sum(1 for i, _ in self.got if i == wid)

    def close(self):
        self.stop.set()
        self.s.close()


@pytest.fixture(scope="module")
def odd(module_cluster_factory):
    rx = OddReceiver()
    c = module_cluster_factory(providers=("a",), spawn=True, server_extra={
        "webhook_url": "http://127.0.0.1:%d/hook" % rx.port,
        "webhook_timeout_ms": 1000, "webhook_retry_max_ms": 200})
    c.start_server()
    c.wait_state("a", "up")
    yield c, rx
    rx.close()


@pytest.mark.parametrize("mode", ["huge", "cut", "trickle"])
def test_webhook_taken_on_2xx_whatever_the_body(odd, mode):
    c, rx = odd
    rx.mode = mode
    sent0 = metric(c, "shivneri_webhooks_sent_total")
    mid = c.submit()
    c.wait_delivered([mid])

    def delivered_hook():
        return rx.ids(lambda b: b.get("id") == mid and
                      b["type"] == "message.delivered")
    wid = h.wait_for(delivered_hook, 10, "the delivered webhook")[0]
    # Sent: the counter moves and the outbox empties, with no try left.
    h.wait_for(lambda: metric(c, "shivneri_webhooks_sent_total") > sent0 and
               metric(c, "shivneri_webhook_outbox") == 0 and
               metric(c, "shivneri_webhooks_in_flight") == 0,
               10, "the webhook to count as sent (%s)" % mode)
    assert rx.count(wid) == 1, (mode, rx.count(wid))
    assert metric(c, "shivneri_webhook_failures_total") == 0
