"""The operator's side under a mistaken or hostile hand: the configuration's
files, SIGHUP reloads and the CLI.  Each test failed on 25baf58.

- One verdict on one file: check-config passed, and serve then refused
  with exit 1 and no FILE:LINE, a users file with a bad line (or none at
  all), a certificate whose key is not a key, agent_listen = localhost
  (serve binds it without resolving), a listen host that does not
  resolve.  A FIFO named as api_keys_file hung check-config.
  breaker_cooldown_ms was taken past the breaker's own 5-minute cap.  A
  number with a '+' was taken.
- api_keys_file holding no key (a file caught half-written by `>`), a
  NUL byte, a FIFO, a removed file: a SIGHUP keeps the keys in force with
  one log line saying why, instead of locking every client out (or, for
  the FIFO, hanging the loop for good); the same for the users file and
  the TLS pair.
- A key removed by a SIGHUP stops at once, for an open GET /v1/events
  stream too (it went on receiving every event).
- A storm of 1,000 SIGHUPs under HTTP and SMTP submissions: no submission
  is refused or lost, the reloads (and their log lines) are a handful
  (about 950 before), and the file written last is the one in force.  A
  SIGHUP while serve starts killed it.
- The CLI: server text with terminal escapes reached the terminal raw
  (send's id, messages' cursor, --json's C1 controls); --timeout bounds a
  hung server; --api-key-file keeps the key out of ps; --url is http(s)
  only and its password is not repeated in errors; a key with a line
  break is refused rather than sent as two headers.
"""

import os
import signal
import smtplib
import socket
import subprocess
import threading
import time

import shivneri_harness as h
import test_40_config_verdict as v
import test_72_smtp_tls_auth as t72

KEY1 = "ops-key-one-0123456789abcdef"
KEY2 = "ops-key-two-fedcba9876543210"


def write_private(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def log_count(c, needle):
    with open(c.server.log_path, "rb") as f:
        return f.read().count(needle)


def stats_status(c, key):
    return c.get("/v1/stats",
                 headers={"Authorization": "Bearer " + key}).status


# -- one verdict on the SMTP intake's files


def test_check_config_loads_the_smtp_files(tmp_path):
    cert, key = t72.make_cert(str(tmp_path))
    users = t72.users_file(str(tmp_path))
    with open(users, "a") as f:
        f.write("no-colon-on-this-line\n")
    write_private(key, b"-----BEGIN PRIVATE KEY-----\nbroken\n")
    lines = v.base(tmp_path, smtp_listen="127.0.0.1:%d" % h.free_port(),
                   smtp_tls_cert_file=cert, smtp_tls_key_file=key,
                   smtp_users_file=users)
    path = v.write_config(tmp_path, lines)
    status, err = v.run(["check-config", "-c", path], str(tmp_path))
    assert status == 2, err
    assert "%s:%d: smtp_users_file: %s:2:" % (
        path, v.line_of(lines, "smtp_users_file"), users) in err, err
    assert "%s:%d: smtp_tls_cert_file: %s" % (
        path, v.line_of(lines, "smtp_tls_cert_file"), key) in err, err
    # serve refuses the same file (it always did: the verdict was split).
    status, err = v.run(["serve", "-c", path], str(tmp_path))
    assert status not in (None, 0), err
    # Good files pass both ways.
    t72.users_file(str(tmp_path))
    cert, key = t72.make_cert(str(tmp_path))
    status, err = v.run(["check-config", "-c", path], str(tmp_path))
    assert status == 0, err


def test_listen_addresses_serve_cannot_use(tmp_path):
    """A name for agent_listen (serve binds it as an address) and a host
    that does not resolve passed check-config, then stopped serve with
    exit 1 and no FILE:LINE."""
    lines = v.base(tmp_path, agent_listen="localhost:%d" % h.free_port())
    v.both_refuse(tmp_path, lines, "agent_listen", "not a name")
    lines = v.base(tmp_path, http_listen="256.1.1.1:%d" % h.free_port())
    v.both_refuse(tmp_path, lines, "http_listen", "cannot resolve 256.1.1.1")


def test_breaker_cooldown_within_the_breakers_cap(tmp_path):
    """breaker_cooldown_ms was taken up to 2^31-1, but the breaker caps
    its doubled cool-down at 5 minutes (so a longer one was cut back at the
    second open) and doubles an int (past 2^30 it overflowed)."""
    for value in ("300001", "2147483647"):
        lines = v.base(tmp_path, breaker_cooldown_ms=value)
        v.both_refuse(tmp_path, lines, "breaker_cooldown_ms",
                      "between 1 and 300000")


# -- api_keys_file without keys


def test_keys_file_without_keys_refused_at_start(tmp_path):
    keys = tmp_path / "keys"
    for text in (b"", b"\n  \n# only a comment\n", KEY1.encode() + b"\0x\n"):
        write_private(str(keys), text)
        lines = v.base(tmp_path, api_keys_file=str(keys))
        words = "NUL byte" if b"\0" in text else "holds no key"
        v.both_refuse(tmp_path, lines, "api_keys_file", words)


def reloads(c):
    """Reloads of api_keys_file so far, taken or refused."""
    return log_count(c, b"api keys loaded") + log_count(c, b"keys_refused")


def test_half_written_keys_file_keeps_the_keys(make_cluster, tmp_path):
    keys = str(tmp_path / "keys")
    write_private(keys, (KEY1 + "\n").encode())
    c = make_cluster(providers=("a",), server_extra={"api_keys_file": keys})
    c.start_server()
    assert stats_status(c, KEY1) == 200
    for text in (b"", b"# being edited\n", b"\0\0\0\0", None):
        if text is None:
            os.unlink(keys)
        else:
            write_private(keys, text)
        n = reloads(c)
        c.server.signal(signal.SIGHUP)
        h.wait_for(lambda: reloads(c) > n, 5, "the reload of %r" % text)
        assert stats_status(c, KEY1) == 200, text
    # One line each, that says why.
    assert log_count(c, b"keys_refused") == 4
    assert log_count(c, b'reason="no key in the file"') == 2
    assert log_count(c, b'reason="a NUL byte in the file"') == 1
    write_private(keys, (KEY2 + "\n").encode())
    c.server.signal(signal.SIGHUP)
    h.wait_for(lambda: stats_status(c, KEY2) == 200, 5, "the new key")
    assert stats_status(c, KEY1) == 401


def test_emptied_users_file(make_cluster, tmp_path):
    """A users file without a user: refused by check-config and serve at
    start, and on SIGHUP the users in force stay (AUTH still works)
    instead of every AUTH failing."""
    users = t72.users_file(str(tmp_path))
    good = open(users, "rb").read()
    write_private(users, b"")
    lines = v.base(tmp_path, smtp_listen="127.0.0.1:%d" % h.free_port(),
                   smtp_users_file=users)
    path = v.write_config(tmp_path, lines)
    status, err = v.run(["check-config", "-c", path], str(tmp_path))
    assert status == 2 and "no user in the file" in err, err
    assert "%s:%d: smtp_users_file" % (
        path, v.line_of(lines, "smtp_users_file")) in err, err
    status, err = v.run(["serve", "-c", path], str(tmp_path))
    assert status not in (None, 0), err

    write_private(users, good)
    port = h.free_port()
    c = make_cluster(providers=("a",), server_extra={
        "smtp_listen": "127.0.0.1:%d" % port, "smtp_users_file": users,
        "smtp_trusted_networks": "", "smtp_allow_plain_auth": "yes"})
    c.start_server()

    def login():
        with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10)) as s:
            s.login(t72.USER, t72.PASSWORD)
        return True

    def loads():
        return (log_count(c, b"smtp users loaded") +
                log_count(c, b"users_reload_failed"))

    assert login()
    for text in (b"", b"\n\n"):
        write_private(users, text)
        n = loads()
        c.server.signal(signal.SIGHUP)
        h.wait_for(lambda: loads() > n, 5, "the users reload")
        assert login(), text
    assert log_count(c, b"no user in the file") == 2


def test_fifo_in_place_of_a_file(make_cluster, tmp_path):
    """A FIFO where a file is named: open() would wait for a writer, so
    check-config hung, and a SIGHUP hung the server's loop for good."""
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo, 0o600)
    lines = v.base(tmp_path, api_keys_file=fifo)
    v.both_refuse(tmp_path, lines, "api_keys_file", "not a regular file")

    keys = str(tmp_path / "keys")
    write_private(keys, (KEY1 + "\n").encode())
    cert, key = t72.make_cert(str(tmp_path))
    port = h.free_port()
    c = make_cluster(providers=("a",), server_extra={
        "api_keys_file": keys, "smtp_listen": "127.0.0.1:%d" % port,
        "smtp_tls_cert_file": cert, "smtp_tls_key_file": key})
    c.start_server()
    for path in (keys, cert):
        os.rename(path, path + ".old")
        os.mkfifo(path, 0o600)
    c.server.signal(signal.SIGHUP)
    h.wait_for(lambda: log_count(c, b"tls_reload_failed") == 1, 5,
               "the refused certificate in the log")
    assert log_count(c, b'reason="not a regular file"') == 1
    assert stats_status(c, KEY1) == 200
    with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10)) as s:
        s.starttls(context=t72.context(cert + ".old"))
        assert s.noop()[0] == 250


def test_log_file_fifo(make_cluster, tmp_path):
    """A FIFO as log_file: check-config said ok and serve waited in
    open() for a reader for ever; a FIFO put in the log's place before a
    SIGHUP (a rotation gone wrong) held the loop in the reopen.  Now both
    refuse it, and the reopen keeps the old file."""
    fifo = str(tmp_path / "log.fifo")
    os.mkfifo(fifo, 0o600)
    lines = v.base(tmp_path, log_file=fifo)
    v.both_refuse(tmp_path, lines, "log_file", "not a regular file")

    log = str(tmp_path / "server.log")
    c = make_cluster(providers=("a",), server_extra={"log_file": log})
    c.start_server()
    os.rename(log, log + ".1")
    os.mkfifo(log, 0o600)
    c.server.signal(signal.SIGHUP)

    def said():
        with open(log + ".1", "rb") as f:
            return b"cannot reopen log" in f.read()
    h.wait_for(said, 10, "the refused reopen in the old log")
    r = c.post("/v1/messages", h.message(1))
    assert r.status == 202, r
    with open(log + ".1", "rb") as f:
        assert r.json["id"].encode() in f.read()


# -- a removed key stops at once


def open_stream(c, key):
    s = socket.create_connection(("127.0.0.1", c.http_port), timeout=5)
    s.sendall(("GET /v1/events HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\n" % key).encode())
    head = b""
    deadline = time.monotonic() + h.scaled(5)
    while b"retry:" not in head and time.monotonic() < deadline:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def closed_within(s, seconds):
    """True once the peer closed s; events received meanwhile are read."""
    deadline = time.monotonic() + h.scaled(seconds)
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if s.recv(65536) == b"":
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


def test_removed_key_ends_its_event_stream(make_cluster, tmp_path):
    keys = str(tmp_path / "keys")
    write_private(keys, ("%s\n%s\n" % (KEY1, KEY2)).encode())
    c = make_cluster(providers=("a",), server_extra={"api_keys_file": keys})
    c.start_server()
    gone, kept = open_stream(c, KEY1), open_stream(c, KEY2)
    try:
        write_private(keys, (KEY2 + "\n").encode())
        c.server.signal(signal.SIGHUP)
        assert closed_within(gone, 5), "stream of a removed key still open"
        h.wait_for(lambda: log_count(c, b"reason=key_removed") == 1, 5,
                   "the closed stream in the log")
        assert stats_status(c, KEY1) == 401
        # The stream of the key that stays goes on and gets events.
        r = c.post("/v1/messages", h.message(1),
                   headers={"Authorization": "Bearer " + KEY2})
        assert r.status == 202, r
        kept.settimeout(h.scaled(5))
        got = b""
        while b"message.queued" not in got:
            chunk = kept.recv(65536)
            assert chunk, "the kept stream was closed"
            got += chunk
    finally:
        gone.close()
        kept.close()


# -- a SIGHUP storm under load


def smtp_sender(port, n, ids, errors):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(20)) as s:
            for i in range(n):
                msg = ("From: a@example.com\r\nTo: b@example.net\r\n"
                       "Subject: storm %d\r\n\r\nhi\r\n" % i)
                resp = s.sendmail("a@example.com", ["b@example.net"], msg)
                assert resp == {}, resp
                ids.append(i)
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append(repr(e))


def test_sighup_storm_under_load(make_cluster, tmp_path):
    keys = str(tmp_path / "keys")
    write_private(keys, (KEY1 + "\n").encode())
    cert, key = t72.make_cert(str(tmp_path))
    port = h.free_port()
    c = make_cluster(providers=("a",), server_extra={
        "api_keys_file": keys, "smtp_listen": "127.0.0.1:%d" % port,
        "smtp_tls_cert_file": cert, "smtp_tls_key_file": key,
        "smtp_users_file": t72.users_file(str(tmp_path))})
    c.start_server()
    c.start_agent("a", wait=False)
    auth = {"Authorization": "Bearer " + KEY1}
    h.wait_for(lambda: c.get("/v1/providers", headers=auth).json[
        "providers"][0]["state"] == "up", 10, "provider a up")
    http_ids, http_bad, smtp_ids, smtp_bad = [], [], [], []
    stop = threading.Event()

    def http_sender():
        i = 0
        while not stop.is_set() and i < 400:
            r = c.post("/v1/messages", h.message(i), headers=auth)
            (http_ids if r.status == 202 else http_bad).append(r.status)
            i += 1

    workers = [threading.Thread(target=http_sender),
               threading.Thread(target=smtp_sender,
                                args=(port, 60, smtp_ids, smtp_bad))]
    for w in workers:
        w.start()
    before = log_count(c, b"api keys loaded")
    start = time.monotonic()
    for i in range(1000):
        os.kill(c.server.pid, signal.SIGHUP)
        if i == 990:
            # The file written during the storm is the one in force after.
            write_private(keys, ("%s\n%s\n" % (KEY1, KEY2)).encode())
        time.sleep(0.001)
    storm_s = time.monotonic() - start
    h.wait_for(lambda: stats_status(c, KEY2) == 200, 5,
               "the key written last in force")
    stop.set()
    for w in workers:
        w.join(h.scaled(30))
    reloads = log_count(c, b"api keys loaded") - before
    # One at once, then at most one each 250 ms, and one to finish.
    assert 1 <= reloads <= storm_s / 0.25 + 3, (reloads, storm_s)
    assert not http_bad, http_bad
    assert not smtp_bad, smtp_bad
    assert len(smtp_ids) == 60 and http_ids
    assert c.server.alive()
    st = c.get("/v1/stats", headers=auth).json
    assert st["queued"] + st["sending"] + st["delivered"] >= \
        len(http_ids) + len(smtp_ids), st


def test_sighup_while_starting(make_cluster):
    """SIGHUPs from the server's first log line (the store opening) on,
    while it opens its listeners and spawns its agents: it used to die of
    the first one (SIGHUP's default action) until its loop watched it."""
    c = make_cluster(providers=("a", "b"), spawn=True)
    c.start_server(wait=False)
    pid = c.server.pid
    h.wait_for(lambda: os.path.getsize(c.server.log_path) > 0, 10,
               "the server's first log line")
    deadline = time.monotonic() + h.scaled(10)
    sent = 0
    while time.monotonic() < deadline:
        if c.server.p.poll() is not None:
            break
        os.kill(pid, signal.SIGHUP)
        sent += 1
        try:
            if c.get("/healthz", timeout=0.2).status == 200:
                break
        except OSError:
            pass
    assert c.server.alive(), (sent, c.server.p.returncode)
    c.wait_healthy()
    h.wait_for(lambda: log_count(c, b"reloaded (SIGHUP)") >= 1, 5,
               "the reload of a SIGHUP that came while starting")
    c.wait_state("a", "up", timeout=15)
    c.wait_delivered([c.submit()])


def test_check_config_output_is_the_same_as_serve(tmp_path):
    """Every syntax error of a file full of them: check-config and serve
    print the same FILE:LINE lines."""
    lines = v.base(tmp_path) + [
        "max_attempts = +5", "retry_base_ms = 10x", "retry_base_ms = 3",
        "[server]", "[provider.p]", "type = maildir", "weight = 0",
        "\tspawn = maybe", "[provider.p]", "x" * 300]
    path = v.write_config(tmp_path, lines)
    outs = []
    for args in (["check-config", "-c", path], ["serve", "-c", path]):
        status, err = v.run(args, str(tmp_path))
        assert status == 2, (args, err)
        outs.append(sorted(l for l in err.splitlines() if l.startswith(path)))
    assert outs[0] == outs[1], outs
    plus = "%s:%d: max_attempts:" % (path, v.line_of(lines, "max_attempts"))
    assert any(l.startswith(plus) for l in outs[0]), outs[0]
    assert len(outs[0]) == 8, outs[0]


def run_cli(args, env=None, timeout=30):
    e = dict(os.environ)
    e.pop("SHIVNERI_API_KEY", None)
    e.update(env or {})
    return subprocess.run([h.BIN] + args, capture_output=True, env=e,
                          timeout=h.scaled(timeout))


# -- the CLI against a server that is slow or hostile

EVIL = "\x1b]0;pwned\x07\x1b[2J\u009b31m"


class FakeApi:
    """A stand-in for the server on 127.0.0.1: each path answers the
    bytes set in routes; every request's Authorization is recorded."""

    def __init__(self, routes):
        self.routes = routes
        self.srv = h.StandIn(lambda req: self.routes.get(
            req.path.split("?")[0], (404, b"{}")) + ("application/json",))
        self.url = self.srv.url

    @property
    def auth(self):
        return [r.headers.get("authorization") for r in self.srv.requests()]

    def close(self):
        self.srv.close()


def evil_routes():
    import json
    msg = {"id": "01ABC" + EVIL, "status": "failed", "from": EVIL,
           "to": [EVIL], "subject": EVIL, "provider": EVIL,
           "error": EVIL, "attempts": [{"n": 1, "at": EVIL,
                                        "provider": EVIL,
                                        "outcome": EVIL, "detail": EVIL}]}
    return {
        "/v1/providers": (200, json.dumps({"providers": [
            {"name": EVIL, "type": EVIL, "state": "down",
             "reason": EVIL}]}).encode()),
        "/v1/messages": (200, json.dumps({"messages": [msg],
                                          "next": EVIL}).encode()),
        "/v1/messages/x": (200, json.dumps(msg).encode()),
        "/v1/stats": (500, json.dumps({"error": {"code": EVIL,
                                                 "message": EVIL}}).encode()),
    }


def test_cli_never_prints_server_escapes():
    fake = FakeApi(evil_routes())
    try:
        runs = [["providers"], ["messages"], ["status", "x"], ["queue"],
                ["providers", "--json"], ["messages", "--json"],
                ["status", "--json", "x"]]
        for args in runs:
            r = run_cli(args + ["--url", fake.url])
            out = r.stdout + r.stderr
            assert r.returncode == (1 if args == ["queue"] else 0), (args, r)
            assert b"\x1b" not in out and b"\x07" not in out, (args, out)
            assert b"\xc2\x9b" not in out, (args, out)
        # send prints the id the server gave: sanitized too.
        fake.routes["/v1/messages"] = (202, b'{"id":"01X\\u001b[2J"}')
        r = run_cli(["send", "--url", fake.url, "--from", "a@example.com",
                     "--to", "b@example.net", "--subject", "s", "--text",
                     "t"])
        assert r.returncode == 0, r
        assert b"\x1b" not in r.stdout, r.stdout
    finally:
        fake.close()


def test_cli_key_file_and_timeout(tmp_path):
    fake = FakeApi({"/v1/stats": (200, b'{"queued": 3}')})
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    try:
        key = tmp_path / "key"
        write_private(str(key), (KEY1 + "\n").encode())
        r = run_cli(["queue", "--url", fake.url, "--api-key-file", str(key)])
        assert r.returncode == 0 and b"queued     3" in r.stdout, r
        r = run_cli(["send", "--url", fake.url, "--api-key-file", str(key),
                     "--from", "a@example.com", "--to", "b@example.net",
                     "--subject", "s", "--text", "t"])
        assert fake.auth == ["Bearer " + KEY1] * 2, fake.auth
        os.chmod(str(key), 0o644)
        r = run_cli(["queue", "--url", fake.url, "--api-key-file", str(key)])
        assert r.returncode == 2 and b"chmod 600" in r.stderr, r
        assert KEY1.encode() not in r.stdout + r.stderr
        for bad in (b"", b"\n", b"two\nlines\n"):
            write_private(str(key), bad)
            r = run_cli(["queue", "--url", fake.url, "--api-key-file",
                         str(key)])
            assert r.returncode == 2 and b"one key" in r.stderr, (bad, r)
        # A server that takes the connection and never answers.
        url = "http://127.0.0.1:%d" % hung.getsockname()[1]
        for args in (["queue"], ["status", "x"]):
            start = time.monotonic()
            r = run_cli(args + ["--url", url, "--timeout", "1"])
            took = time.monotonic() - start
            assert r.returncode == 1 and b"timed out" in r.stderr, r
            assert took < h.scaled(5), took
        r = run_cli(["queue", "--url", url, "--timeout", "0"])
        assert r.returncode == 2 and b"--timeout" in r.stderr, r
    finally:
        hung.close()
        fake.close()


def test_cli_url_is_a_server_and_key_one_line(tmp_path):
    """--url file://... read a local file and printed it in the error;
    a key with a line break added a header of its own to the request; a
    password in --url was printed with every connection error."""
    secret = tmp_path / "not-for-the-cli"
    secret.write_text("local-file-content-0123\n")
    r = run_cli(["queue", "--url", "file://%s#" % secret])
    assert r.returncode == 1, r
    assert b"local-file-content" not in r.stdout + r.stderr, r
    fake = FakeApi({"/v1/stats": (200, b'{"queued": 1}')})
    try:
        r = run_cli(["queue", "--url", fake.url], env={
            "SHIVNERI_API_KEY": "k\r\nX-Injected: 1"})
        assert r.returncode == 1 and b"line break" in r.stderr, r
        assert fake.auth == [], fake.auth
        # Credentials in the URL (a proxy's) are not repeated in errors.
        r = run_cli(["status", "--url", "http://ops:pw-0123456789@127.0.0.1:1",
                     "x"])
        assert r.returncode == 1 and b"***@127.0.0.1:1" in r.stderr, r
        assert b"pw-0123456789" not in r.stderr, r
    finally:
        fake.close()
