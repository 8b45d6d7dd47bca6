"""The web console (issue 10): its files, and the console in a real browser.

The files are served at /, /app.js, /app.css and /favicon.svg (also at
/favicon.ico) from the binary, with a strong ETag, Cache-Control: no-cache, and the security headers, and need no
API key even when keys are on.  Then Debian's chromium, headless, driven by
Playwright (tests/browser/console.mjs, one browser for the module, one JSON
command a line) goes through the console against a server with API keys and
two maildir agents: it asks for the key once and keeps it in the session;
a message sent from the compose form becomes delivered on its page; a bad
address is shown next to its field; a killed agent's card turns down, then
up when it returns; a provider disabled from the board gets no traffic; a
failed message retried from the queue is delivered; the icon is fetched
and no request of the pages is answered 404.  The browser's waits
are Playwright's polling with deadlines.  SHIVNERI_CONSOLE_SHOTS=DIR saves
the screenshots of the README there (docs/console); otherwise they go to a
temporary folder.  Skipped, saying why, without node, the npm packages of
tests/browser (make test installs them) or /usr/bin/chromium.
"""

import email
import email.policy
import json
import os
import select
import shutil
import subprocess
import sys
import time

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import smtp_fake  # noqa: E402

BROWSER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                       "browser")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
KEY = "console-key-" + os.urandom(8).hex()
AUTH = {"Authorization": "Bearer " + KEY}

# Under CI (make test installs all of it) a missing piece is a failure.
needs_browser = pytest.mark.skipif(
    not os.environ.get("CI") and (
    shutil.which("node") is None
    or not os.path.isdir(os.path.join(BROWSER, "node_modules",
                                      "playwright-core"))
    or not os.access(CHROMIUM, os.X_OK)),
    reason="node, tests/browser/node_modules (make test runs npm ci) or "
           "%s missing" % CHROMIUM)


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(KEY + "\n")
    os.chmod(keys, 0o600)
    return str(keys)


@pytest.fixture(scope="module")
def cl(module_cluster_factory, keys_file):
    c = module_cluster_factory(
        providers=("a", "b"),
        server_extra={"api_keys_file": keys_file})
    c.start_server()
    c.start_agent("a", wait=False)
    c.start_agent("b", wait=False)
    for n in ("a", "b"):
        h.wait_for(lambda n=n: provider(c, n)["state"] == "up", 10,
                   "provider %s up" % n)
    return c


def api(c, method, path, body=None):
    return h.http(c.http_port, method, path, body=body, headers=AUTH)


def provider(c, name):
    r = api(c, "GET", "/v1/providers")
    assert r.status == 200, r
    return {p["name"]: p for p in r.json["providers"]}[name]


def message_of(c, mid):
    r = api(c, "GET", "/v1/messages/" + mid)
    assert r.status == 200, r
    return r.json


def wait_status(c, mid, status, timeout=15):
    return h.wait_for(
        lambda: message_of(c, mid)["status"] == status and message_of(c, mid),
        timeout, "message %s %s" % (mid, status))


class Browser:
    """console.mjs as a child: one JSON command a line, one answer."""

    def __init__(self, log_path):
        self.log = open(log_path, "wb")
        env = dict(os.environ, CHROMIUM=CHROMIUM,
                   CONSOLE_TIMEOUT_MS=str(int(h.scaled(10) * 1000)))
        self.p = subprocess.Popen(["node", "console.mjs"], cwd=BROWSER,
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=self.log,
                                  env=env)
        self.buf = b""
        ready = self._read(h.scaled(30))
        assert ready.get("ready"), ready

    def _read(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise h.WaitTimeout("no answer from console.mjs in %.0fs"
                                    % timeout)
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError("console.mjs exited: %s" %
                                         h.tail(self.log.name, 20))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def __call__(self, op, timeout=10, **kw):
        """Runs op; its own waits end within timeout (scaled)."""
        kw.update(op=op, timeout_ms=int(h.scaled(timeout) * 1000))
        self.p.stdin.write((json.dumps(kw) + "\n").encode())
        self.p.stdin.flush()
        a = self._read(h.scaled(timeout) + h.scaled(10))
        assert a.get("ok"), "%s: %s" % (op, a.get("error"))
        return a

    def close(self):
        try:
            if self.p.poll() is None:
                self("quit")
                self.p.stdin.close()
                self.p.wait(timeout=h.scaled(10))
        finally:
            if self.p.poll() is None:
                self.p.kill()
                self.p.wait()
            self.log.close()


@pytest.fixture(scope="module")
def br(cl, tmp_path_factory):
    b = Browser(os.path.join(cl.dir, "browser.log"))
    try:
        b("open", url="http://127.0.0.1:%d/" % cl.http_port)
        yield b
    finally:
        b.close()
        print("----- browser.log -----")
        print(h.tail(os.path.join(cl.dir, "browser.log"), 30))


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = os.environ.get("SHIVNERI_CONSOLE_SHOTS")
    if d:
        os.makedirs(d, exist_ok=True)
        return os.path.abspath(d)
    return str(tmp_path_factory.mktemp("shots"))


# ------------------------------------------------------------ the files

SECURITY = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def test_console_files(cl):
    """Public, typed, cached by a strong ETag, with the security headers;
    /v1 still wants the key."""
    types = {"/": "text/html", "/app.js": "text/javascript",
             "/app.css": "text/css", "/favicon.svg": "image/svg+xml",
             "/favicon.ico": "image/svg+xml"}
    for path, ctype in types.items():
        r = h.http(cl.http_port, "GET", path)
        assert r.status == 200, (path, r)
        assert r.headers["Content-Type"].startswith(ctype), r.headers
        for k, v in SECURITY.items():
            assert r.headers.get(k, "").startswith(v), (path, k, r.headers)
        csp = r.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
        assert r.headers["Cache-Control"] == "no-cache", r.headers
        etag = r.headers["ETag"]
        assert etag.startswith('"') and etag.endswith('"'), etag
        assert int(r.headers["Content-Length"]) == len(r.body) > 100
        # Revalidation: 304 without a body, for the tag alone or in a list.
        for inm in (etag, '"other", ' + etag, "W/" + etag, "*"):
            r2 = h.http(cl.http_port, "GET", path,
                        headers={"If-None-Match": inm})
            assert r2.status == 304 and r2.body == b"", (inm, r2)
            assert r2.headers["ETag"] == etag, r2.headers
            assert "Content-Length" not in r2.headers, r2.headers
        r3 = h.http(cl.http_port, "GET", path,
                    headers={"If-None-Match": '"stale"'})
        assert r3.status == 200 and r3.body == r.body, r3
        r4 = h.http(cl.http_port, "HEAD", path)
        assert r4.status == 200 and r4.body == b"", r4
        r5 = h.http(cl.http_port, "POST", path, body=b"{}")
        h.assert_error(r5, 405, {"method_not_allowed"})
        assert r5.headers["Allow"] == "GET, HEAD", r5.headers
    # The icon the browser asks for by itself is the page's icon.
    ico = h.http(cl.http_port, "GET", "/favicon.ico")
    svg = h.http(cl.http_port, "GET", "/favicon.svg")
    assert ico.body == svg.body and svg.body.startswith(b"<svg "), ico
    assert ico.headers["ETag"] == svg.headers["ETag"]
    # A query does not change the file; the page holds no secret.
    r = h.http(cl.http_port, "GET", "/?key=x")
    assert r.status == 200 and b"<script" in r.body, r
    assert b"app.js" in r.body and KEY.encode() not in r.body
    # The JS never writes API text as HTML.
    js = h.http(cl.http_port, "GET", "/app.js").body
    for bad in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML",
                b"localStorage.setItem", b"eval("):
        assert bad not in js, bad
    h.assert_error(h.http(cl.http_port, "GET", "/v1/providers"), 401,
                   {"unauthorized"})
    h.assert_error(h.http(cl.http_port, "GET", "/app.jsx"), 404,
                   {"not_found"})


# ------------------------------------------------------------ the browser


def not_found(answers):
    return [a for a in answers if a["status"] == 404]


@needs_browser
def test_icon_and_no_404(cl, br):
    """The browser fetches the icon the page names, and gets it; no
    request of the page has been answered 404 so far (the rest of the
    module is checked at its end)."""
    got = br("responses", path="/favicon.svg")["responses"]
    icon = [a for a in got if a["url"].endswith("/favicon.svg")]
    assert icon and icon[0]["status"] == 200, got
    assert not_found(got) == [], got


@needs_browser
def test_key_once_and_board(cl, br):
    """/v1 answers 401: the key is asked for (again, saying so, after a
    wrong one, which is not kept), kept in sessionStorage only; the board
    then shows both providers up, and the event stream is on."""
    refused = br("login_refused", key="not-the-key")
    assert "refused" in refused["text"], refused
    assert br("key_stored")["session"] is None
    br("login", key=KEY)
    for n in ("a", "b"):
        br("wait_card", name=n, state="up")
    # GET /v1/events with the key in its header: the views follow it (and
    # stop polling) from here on.
    br("wait_live")
    where = br("key_stored")
    assert where["session"] == KEY, where
    assert where["local"] == 0 and KEY not in where["url"], where


@needs_browser
def test_board_shows_link_and_size(cl, br):
    """Each card says what GET /v1/providers says of the agent's link
    (in clear on loopback) and of the size limit (the server's 25 MiB,
    in human units), and no limit lowered."""
    br("go", hash="#/")
    for n in ("a", "b"):
        br("wait_card", name=n, state="up")
        p = provider(cl, n)
        assert p["link_tls"] is False and p["max_message_bytes"] == 25 * 2**20
        card = 'section.provider[data-provider="%s"] ' % n
        assert br("text", selector=card + ".kv.link .v")["text"] == \
            "plain (no TLS)"
        assert br("text", selector=card + ".kv.size-limit .v")["text"] == \
            "25 MiB"


@needs_browser
def test_compose_to_delivered(cl, br):
    """Every field of the form reaches the message; its page turns
    delivered without a reload."""
    br("go", hash="#/compose")
    br("compose", fields={
        "from": "Ann <ann@example.com>",
        "to": "bob@example.net, carol@example.org",
        "cc": "dan@example.net",
        "bcc": "eve@example.net",
        "reply_to": "help@example.com",
        "subject": "Hello from the console",
        "text": "Plain words.",
        "html": "<p>Some <b>HTML</b>.</p>",
        "headers": "X-Campaign: console-1",
        "tags": "welcome, console",
    }, files=[{"name": "note.txt", "type": "text/plain",
               "text": "attached from disk"}])
    mid = br("sent_id")["id"]
    br("click", selector="#sent-link")
    got = br("wait_status", status="delivered", timeout=20)
    assert got["outcomes"] == ["delivered"], got
    m = message_of(cl, mid)
    assert m["tags"] == ["welcome", "console"], m
    path = None
    for n in ("a", "b"):
        for sub in ("new", "cur"):
            d = os.path.join(cl.maildir(n), sub)
            for f in os.listdir(d) if os.path.isdir(d) else ():
                with open(os.path.join(d, f), "rb") as fh:
                    if ("<%s@" % mid).encode() in fh.read(4096):
                        path = os.path.join(d, f)
    assert path, "message %s not in a maildir" % mid
    with open(path, "rb") as fh:
        msg = email.message_from_binary_file(fh, policy=email.policy.default)
    assert msg["Subject"] == "Hello from the console", msg
    assert msg["X-Campaign"] == "console-1"
    assert "carol@example.org" in msg["To"] and msg["Cc"] == "dan@example.net"
    assert msg["Bcc"] is None and msg["Reply-To"] == "help@example.com"
    names = [p.get_filename() for p in msg.iter_attachments()]
    assert "note.txt" in names, names
    att = [p for p in msg.iter_attachments() if p.get_filename() == "note.txt"]
    assert att[0].get_content() == "attached from disk"


@needs_browser
def test_field_error_next_to_field(cl, br, shots):
    """The API's "to[1]: not a valid address" lands by the To field, and
    nothing is stored."""
    before = api(cl, "GET", "/v1/stats").json
    br("go", hash="#/compose")
    br("compose", fields={"from": "ann@example.com",
                          "to": "bob@example.net, not an address",
                          "subject": "x", "text": "y"})
    e = br("field_error", field="to")
    assert e["in_field"], e
    assert e["text"].startswith("to[1]:"), e
    br("screenshot", path=os.path.join(shots, "compose-error.png"))
    after = api(cl, "GET", "/v1/stats").json
    assert sum(after.values()) == sum(before.values()), (before, after)


@needs_browser
def test_disable_from_board(cl, br):
    """A provider disabled by its button takes no new message."""
    br("go", hash="#/")
    before_a = h.maildir_count(cl.maildir("a"))
    br("card_action", name="a", action="disable")
    br("wait_card", name="a", state="disabled")
    assert provider(cl, "a")["state"] == "disabled"
    ids = []
    for i in range(6):
        r = api(cl, "POST", "/v1/messages", h.message(900 + i))
        assert r.status == 202, r
        ids.append(r.json["id"])
    for mid in ids:
        assert wait_status(cl, mid, "delivered")["provider"] == "b"
    assert h.maildir_count(cl.maildir("a")) == before_a
    br("card_action", name="a", action="enable")
    br("wait_card", name="a", state="up")


@needs_browser
def test_agent_down_then_up(cl, br, shots):
    """A killed agent's card turns down with the reason, and up again when
    a new agent registers."""
    br("go", hash="#/")
    br("wait_card", name="b", state="up")
    cl.agents["b"].kill9()
    t = br("wait_card", name="b", state="down", timeout=10)["text"]
    assert "link closed" in t or "heartbeat" in t, t
    br("screenshot", path=os.path.join(shots, "board.png"))
    cl.start_agent("b", wait=False)
    br("wait_card", name="b", state="up", timeout=10)


@needs_browser
def test_queue_pages_and_filter(cl, br):
    """The queue pages by the API's cursor, newest first, and filters by
    provider through its select."""
    total = api(cl, "GET", "/v1/stats").json
    ids = []
    for i in range(27 - sum(total.values())):
        r = api(cl, "POST", "/v1/messages", h.message(700 + i))
        assert r.status == 202, r
        ids.append(r.json["id"])
    for mid in ids:
        wait_status(cl, mid, "delivered")
    br("go", hash="#/queue")
    p1 = br("rows", page=1, count=25)
    assert p1["older"] and not p1["newer"], p1
    assert {r["id"] for r in p1["rows"][:len(ids)]} == set(ids), p1
    br("click", selector="#q-next")
    p2 = br("rows", page=2, count=2)
    assert not p2["older"] and p2["newer"], p2
    seen = {r["id"] for r in p1["rows"]} | {r["id"] for r in p2["rows"]}
    assert len(seen) == 27
    br("click", selector="#q-prev")
    br("rows", page=1, count=25)
    # By provider: the select puts it in the address, the API filters.
    r = api(cl, "GET", "/v1/messages?provider=a&limit=200")
    want = len(r.json["messages"])
    assert 0 < want < 27, r
    br("select", selector="#q-provider", value="a")
    pa = br("rows", page=1, count=want, provider="a")
    assert {x["provider"] for x in pa["rows"]} == {"a"}, pa


@needs_browser
def test_api_text_stays_text(cl, br):
    """Markup in a message's subject, recipients' names and tags is shown
    as the characters it is, on the message page and in the queue: no
    element is made of it and no handler runs."""
    evil = '<img src=x onerror="window.__console_xss=1"><b>bold</b>'
    r = api(cl, "POST", "/v1/messages",
            h.message(980, subject=evil, to=['"<i>x</i>" <x@example.net>'],
                      tags=["<u>t</u>"]))
    assert r.status == 202, r
    mid = r.json["id"]
    wait_status(cl, mid, "delivered")
    tags = ["img", "b", "i", "u"]
    for view in ("#/message/" + mid, "#/queue"):
        br("go", hash=view)
        got = br("markup_probe", text="<b>bold</b>", tags=tags)
        assert got == {"found": [], "ran": False, "ok": True}, (view, got)


@needs_browser
def test_stream_follows_a_restart(cl, br):
    """The server is killed and started again: the console's stream
    reconnects by itself (with its Last-Event-ID, from the earlier run) and
    a delivery then reaches an open message page through it alone (the page
    polls only while the stream is down)."""
    br("go", hash="#/")
    br("wait_live")
    cl.server.kill9()
    br("wait_live", off=True)
    cl.start_server()
    for n in ("a", "b"):
        h.wait_for(lambda n=n: provider(cl, n)["state"] == "up", 10,
                   "provider %s up again" % n)
    br("wait_live", timeout=15)
    for n in ("a", "b"):
        assert api(cl, "POST", "/v1/providers/%s/disable" % n).status == 200
    r = api(cl, "POST", "/v1/messages", h.message(990, subject="after"))
    assert r.status == 202, r
    mid = r.json["id"]
    br("go", hash="#/message/" + mid)
    br("wait_status", status="queued")
    for n in ("a", "b"):
        assert api(cl, "POST", "/v1/providers/%s/enable" % n).status == 200
    got = br("wait_status", status="delivered")
    assert got["outcomes"] == ["delivered"], got


@pytest.fixture(scope="module")
def smtp_cl(module_cluster_factory, keys_file):
    """A second server whose one provider "s" is the smtp connector aimed
    at a fake smarthost that refuses RCPT for one address (550: permanent)
    until told otherwise."""
    fake = smtp_fake.SmtpFake(h.free_port()).start()
    try:
        c = module_cluster_factory(providers=("s",),
                                   server_extra={"api_keys_file": keys_file})
        c.smtp_provider("s", fake.port)
        c.start_server()
        c.start_agent("s", wait=False)
        h.wait_for(lambda: provider(c, "s")["state"] == "up", 10,
                   "provider s up")
        yield c, fake
    finally:
        fake.stop()


@needs_browser
def test_learned_limit_on_the_board(make_cluster, tmp_path, shots):
    """A too_large answer lowers a provider's limit (test_62's SendGrid
    stand-ins, small first): its card then says how low, and "lowered
    until HH:MM (a too_large answer)" with the API's time in the
    browser's zone; the larger provider's card says nothing of it."""
    from test_62_size_routing import big_message, sendgrid_cluster
    import fake_sendgrid
    import datetime
    from test_62_size_routing import KEY as SG_KEY, SMALL_REQUEST
    small = fake_sendgrid.FakeSendGrid(SG_KEY, limit=SMALL_REQUEST).start()
    big = fake_sendgrid.FakeSendGrid(SG_KEY).start()
    b = None
    try:
        c = sendgrid_cluster(make_cluster, small, big)
        b = Browser(str(tmp_path / "browser-limit.log"))
        b("open", url="http://127.0.0.1:%d/" % c.http_port)
        card = 'section.provider[data-provider="small"] .kv.size-limit '
        b("wait_card", name="small", state="up")
        assert b("text", selector=card + ".v")["text"] == "25 MiB"
        mid = c.submit(big_message(1))
        c.wait_delivered([mid], timeout=h.scaled(15))
        p = c.provider("small")
        until = datetime.datetime.strptime(
            p["max_message_bytes_learned_until"], "%Y-%m-%dT%H:%M:%S.%fZ")
        local = until.replace(tzinfo=datetime.timezone.utc).astimezone()
        text = b("text", selector=card + ".learned")["text"]
        assert text == "lowered until %s (a too_large answer)" % (
            local.strftime("%H:%M")), (text, p)
        n = p["max_message_bytes"]
        size = "%d.%d kB" % (n // 1000, n % 1000 // 100)
        text = b("text", selector=card + ".v")["text"]
        assert text.split("\n")[0] == size, (text, p)
        b("screenshot", path=os.path.join(shots, "board-limit.png"))
        big_card = 'section.provider[data-provider="big"] .kv.size-limit .v'
        assert b("text", selector=big_card)["text"] == "25 MiB"
        assert b("errors")["errors"] == []
    finally:
        if b is not None:
            b.close()
        small.stop()
        big.stop()


class ConsoleStandIn:
    """The console's files from web/ and a hostile GET /v1/providers,
    on 127.0.0.1, without the server's Content-Security-Policy: markup
    the console made of API text would run here."""

    TYPES = {"/": ("index.html", "text/html"),
             "/app.js": ("app.js", "text/javascript"),
             "/app.css": ("app.css", "text/css"),
             "/favicon.svg": ("favicon.svg", "image/svg+xml")}

    def __init__(self, providers):
        web = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "..", "..", "web")
        body = json.dumps({"providers": providers}).encode()
        types = self.TYPES

        def reply(req):
            path = req.path.split("?")[0]
            if path in types:
                with open(os.path.join(web, types[path][0]), "rb") as f:
                    return 200, f.read(), types[path][1]
            if path == "/v1/providers":
                return 200, body, "application/json"
            return 404, b"{}", "application/json"

        self.srv = h.StandIn(reply)
        self.url = self.srv.url + "/"

    def close(self):
        self.srv.close()


@needs_browser
def test_provider_fields_stay_text(tmp_path):
    """Markup where GET /v1/providers has the link, the size limit and
    the lowered limit's time is shown as the characters it is: no element
    is made of it and no handler runs, even without the server's CSP."""
    run = '<img src=x onerror="window.__console_xss=1">'
    evil = {"name": "p", "type": "maildir", "state": "up", "in_flight": 0,
            "max_in_flight": 1, "delivered": 0, "failed": 0,
            "link_tls": run + "<i>tls</i>",
            "max_message_bytes": "<b>bold</b>" + run,
            "max_message_bytes_learned_until": run + "<u>until</u>",
            "smtputf8_refused_until": run + "<s>utf8</s>"}
    stand_in = ConsoleStandIn([evil])
    b = Browser(str(tmp_path / "browser-xss.log"))
    try:
        b("open", url=stand_in.url)
        for text in ("<b>bold</b>", "<i>tls</i>", "<u>until</u>",
                     "<s>utf8</s>"):
            got = b("markup_probe", text=text, tags=["img", "b", "i", "u"])
            assert got == {"found": [], "ran": False, "ok": True}, (text,
                                                                     got)
    finally:
        b.close()
        stand_in.close()


@needs_browser
def test_smtputf8_refusal_on_the_board(tmp_path):
    """While GET /v1/providers says a provider refused SMTPUTF8 until a
    time, its card says so, in the browser's zone; a provider without it
    has no such row."""
    import datetime
    until = "2026-12-01T12:34:56.000Z"
    base = {"type": "smtp", "state": "up", "in_flight": 0,
            "max_in_flight": 4, "delivered": 0, "failed": 0,
            "link_tls": False, "max_message_bytes": 26214400,
            "max_message_bytes_learned_until": None}
    stand_in = ConsoleStandIn([
        dict(base, name="plain", smtputf8_refused_until=until),
        dict(base, name="wide", smtputf8_refused_until=None)])
    b = Browser(str(tmp_path / "browser-utf8.log"))
    try:
        b("open", url=stand_in.url)
        b("wait_card", name="wide", state="up")
        local = datetime.datetime.strptime(
            until, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc).astimezone()
        text = b("text", selector='section.provider[data-provider="plain"]'
                 ' .kv.smtputf8 .v')["text"]
        assert text == ("refused until %s (non-ASCII addresses go "
                        "elsewhere)" % local.strftime("%H:%M")), text
        got = b("count", selector='section.provider[data-provider="wide"]'
                ' .kv.smtputf8')
        assert got["count"] == 0, got
    finally:
        b.close()
        stand_in.close()


@needs_browser
def test_retry_failed_from_queue(smtp_cl, br, shots):
    """A message the smarthost refused for good is failed; its Retry button
    in the queue (filtered by status) puts it back with a fresh budget, and
    its page shows both attempts on the timeline.  Last: the page never
    broke its own CSP nor threw, on either server."""
    c, fake = smtp_cl
    fake.refuse_rcpt["nobody@example.net"] = "550 5.1.1 no such user here"
    r = api(c, "POST", "/v1/messages",
            h.message(950, to=["nobody@example.net"], subject="retry me"))
    assert r.status == 202, r
    mid = r.json["id"]
    m = wait_status(c, mid, "failed")
    assert "550" in (m["error"] or ""), m
    fake.refuse_rcpt.clear()
    br("open", url="http://127.0.0.1:%d/#/queue?status=failed" % c.http_port)
    br("login", key=KEY)
    br("wait_row", id=mid, status="failed")
    br("screenshot", path=os.path.join(shots, "queue.png"))
    br("retry_row", id=mid)
    wait_status(c, mid, "delivered")
    br("go", hash="#/message/" + mid)
    got = br("wait_status", status="delivered")
    assert got["outcomes"] == ["permanent", "delivered"], got
    br("screenshot", path=os.path.join(shots, "message.png"))
    errs = br("errors")["errors"]
    assert errs == [], errs
    answers = br("responses")["responses"]
    assert not_found(answers) == [], not_found(answers)
