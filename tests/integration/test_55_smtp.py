"""The smtp connector against a real SMTP server (aiosmtpd, Debian's
python3-aiosmtpd) on 127.0.0.1: plain, STARTTLS with AUTH and implicit
TLS, each verified against a CA made at test time; per-recipient refusals;
the classes of its failures (account, transient and failover to a
maildir provider, ambiguous); the bytes that arrive are the stored MIME;
the password never shows in a log or an API answer."""

import glob
import os
import signal
import subprocess
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import smtp_fake  # noqa: E402

PASSWORD = "Pw-zq7Xv9-distinctive-3141"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return smtp_fake.make_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture
def fakes():
    started = []

    def make(**kw):
        f = smtp_fake.SmtpFake(h.free_port(), **kw).start()
        started.append(f)
        return f
    yield make
    for f in started:
        f.stop()


def smtp_cluster(make_cluster, fake, extra=None, maildir=None):
    """A cluster whose provider "s" is the smtp connector aimed at fake,
    and, with maildir, a maildir provider of that name too."""
    c = make_cluster(providers=("s",) + ((maildir,) if maildir else ()))
    c.smtp_provider("s", fake.port, **(extra or {}))
    return c


def tls_auth_relay(make_cluster, fakes, certs, tmp_path, **fake_kw):
    """A started server and agent "s" relaying through a STARTTLS
    smarthost stand-in whose one account is relay/PASSWORD; (c, fake)."""
    fake = fakes(tls="starttls", certs=certs, user="relay",
                 password=PASSWORD, **fake_kw)
    pw = str(tmp_path / "smtp.pw")
    h.Cluster.write_secret(pw, PASSWORD)
    c = smtp_cluster(make_cluster, fake,
                     {"tls": "starttls", "username": "relay",
                      "password_file": pw, "tls_ca_file": certs[0]})
    c.start_server()
    c.start_agent("s")
    return c, fake


def agent_outcome(c, mid):
    """The outcome the agent sent for mid's last job (its log line
    "MSGID result job=N outcome=X"), or None.  The connector's class is
    read there: a server without the dispatcher's classes records every
    class but delivered and permanent as transient."""
    found = None
    for path in sorted(glob.glob(os.path.join(c.dir, "agent-*.log"))):
        with open(path, errors="replace") as f:
            for line in f:
                if mid in line and " result job=" in line:
                    found = line.split("outcome=", 1)[1].split()[0]
    return found


def wait_outcome(c, mid, outcome, timeout=10):
    """Waits until the agent answered outcome for mid and the server
    recorded an attempt with a detail; returns the message."""
    def cond():
        if agent_outcome(c, mid) != outcome:
            return None
        m = c.msg(mid)
        if m["attempts"] and m["attempts"][0]["detail"]:
            return m
        return None
    return h.wait_for(cond, timeout, "an attempt of %s %s" % (mid, outcome))


def wait_received(fake, n, timeout=10):
    return h.wait_for(lambda: len(fake.messages()) >= n and fake.messages(),
                      timeout, "%d messages at the SMTP stand-in" % n)


def header(data, name):
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        k, _, v = line.partition(b":")
        if k.strip().lower() == name.lower().encode():
            return v.strip()
    return None


def test_plain_delivery(make_cluster, fakes):
    fake = fakes()
    c = smtp_cluster(make_cluster, fake)
    c.start_server()
    c.start_agent("s")
    mid = c.submit(h.message(1, to=["bob@example.net", "cy@example.org"]))
    c.wait_delivered([mid])
    got = wait_received(fake, 1)[0]
    assert got["from"] == "ann@example.com"
    assert sorted(got["to"]) == ["bob@example.net", "cy@example.org"]
    assert mid.encode() in header(got["data"], "Message-ID")
    m = c.msg(mid)
    assert m["attempts"][-1]["outcome"] == "delivered", m


def test_starttls_auth_and_secret_never_shown(make_cluster, fakes, certs,
                                             tmp_path):
    c, fake = tls_auth_relay(make_cluster, fakes, certs, tmp_path)
    mid = c.submit(h.message(2))
    c.wait_delivered([mid])
    got = wait_received(fake, 1)[0]
    assert got["auth"], got
    assert fake.auth_tries == [True]

    # A wrong password: the account's fault, not the message's.
    wrong = str(tmp_path / "wrong.pw")
    h.Cluster.write_secret(wrong, PASSWORD + "-old")
    fake2 = fakes(tls="starttls", certs=certs, user="relay",
                  password=PASSWORD + "-new")
    c2 = smtp_cluster(make_cluster, fake2,
                      {"tls": "starttls", "username": "relay",
                       "password_file": wrong, "tls_ca_file": certs[0]})
    c2.start_server()
    c2.start_agent("s")
    mid2 = c2.submit(h.message(3))
    m2 = wait_outcome(c2, mid2, "account")
    assert fake2.auth_tries and not any(fake2.auth_tries)
    assert not fake2.messages()

    answers = []
    for cl, ids in ((c, [mid]), (c2, [mid2])):
        for path in ("/v1/providers", "/v1/stats", "/healthz"):
            answers.append(cl.get(path).body)
        for i in ids:
            answers.append(cl.get("/v1/messages/" + i).body)
    assert m2["attempts"]
    logs = glob.glob(os.path.join(c.dir, "*.log")) + \
        glob.glob(os.path.join(c2.dir, "*.log"))
    assert len(logs) >= 4, logs
    for path in logs:
        with open(path, "rb") as f:
            assert PASSWORD.encode() not in f.read(), path
    for body in answers:
        assert PASSWORD.encode() not in body


def test_implicit_tls_verified(make_cluster, fakes, certs):
    fake = fakes(tls="implicit", certs=certs)
    c = smtp_cluster(make_cluster, fake,
                     {"tls": "implicit", "tls_ca_file": certs[0]})
    c.start_server()
    c.start_agent("s")
    mid = c.submit(h.message(4))
    c.wait_delivered([mid])
    assert len(wait_received(fake, 1)) == 1


def test_unknown_ca_is_refused(make_cluster, fakes, certs):
    # Without tls_ca_file the system store does not know our CA: the
    # certificate is verified, so nothing is sent.
    fake = fakes(tls="implicit", certs=certs)
    c = smtp_cluster(make_cluster, fake, {"tls": "implicit"})
    c.start_server()
    c.start_agent("s")
    mid = c.submit(h.message(5))
    m = wait_outcome(c, mid, "transient")
    assert not fake.messages()
    assert "certificate" in m["attempts"][0]["detail"].lower() or \
        "ssl" in m["attempts"][0]["detail"].lower(), m


def test_one_recipient_refused(make_cluster, fakes):
    fake = fakes()
    fake.refuse_rcpt["nobody@example.net"] = "550 5.1.1 user unknown"
    c = smtp_cluster(make_cluster, fake)
    c.start_server()
    c.start_agent("s")
    mid = c.submit(h.message(6, to=["bob@example.net", "nobody@example.net",
                                    "cy@example.org"]))
    c.wait_delivered([mid])
    got = wait_received(fake, 1)[0]
    assert sorted(got["to"]) == ["bob@example.net", "cy@example.org"]
    att = c.msg(mid)["attempts"][-1]
    assert att["outcome"] == "delivered", att
    assert "nobody@example.net 550" in att["detail"], att
    assert "bob@" not in att["detail"], att

    # Every recipient refused for good: permanent, not retried.
    mid2 = c.submit(h.message(7, to=["nobody@example.net"]))
    m = wait_outcome(c, mid2, "permanent")
    assert "550" in m["attempts"][0]["detail"], m

    # 452: too many recipients for now, the smarthost's rate.
    fake.refuse_rcpt["busy@example.net"] = "452 4.5.3 too many recipients"
    mid3 = c.submit(h.message(11, to=["busy@example.net"]))
    m3 = wait_outcome(c, mid3, "throttled")
    assert "busy@example.net 452" in m3["attempts"][0]["detail"], m3


def test_relay_denied_goes_to_another_provider(make_cluster, fakes):
    """A smarthost that stops relaying for us refuses every recipient
    5xx ("Relay access denied"): the smarthost's fault, so the message
    goes to the other provider; before, it failed for good."""
    fake = fakes()
    for rcpt in ("bob@example.net", "cy@example.org"):
        fake.refuse_rcpt[rcpt] = ("554 5.7.1 <%s>: Relay access denied" %
                                  rcpt)
    c = smtp_cluster(make_cluster, fake, maildir="m")
    c.start_server()
    c.start_agent("s")
    mid = c.submit(h.message(12, to=["bob@example.net", "cy@example.org"]))
    m = wait_outcome(c, mid, "transient")
    assert "refuses to relay" in m["attempts"][0]["detail"], m
    c.start_agent("m")
    c.wait_delivered([mid])
    assert c.msg(mid)["provider"] == "m"
    assert not fake.messages()


def test_transient_goes_to_maildir_with_same_bytes(make_cluster, fakes):
    fake = fakes()
    fake.data_reply = "451 4.3.0 try again later"
    c = smtp_cluster(make_cluster, fake, maildir="m")
    c.start_server()
    c.start_agent("s")
    text = "line one\n.starts with a dot\n..two dots\n.\nend\n"
    mid = c.submit(h.message(8, text=text))
    m = wait_outcome(c, mid, "transient")
    assert "451" in m["attempts"][0]["detail"], m
    smtp_bytes = wait_received(fake, 1)[0]["data"]
    # The maildir writes the stored MIME as it is: the SMTP stand-in got
    # the same bytes, dot-stuffing undone.
    c.start_agent("m")
    c.wait_delivered([mid])
    files = glob.glob(os.path.join(c.maildir("m"), "new", "*"))
    assert len(files) == 1, files
    with open(files[0], "rb") as f:
        stored = f.read()
    assert smtp_bytes == stored
    assert b"\r\n." in stored, "the message has no line to dot-stuff"
    assert c.msg(mid)["provider"] == "m"

    # A 421 at MAIL: the server is going away; transient too.
    fake.data_reply = None
    fake.mail_reply = "421 4.3.2 service shutting down"
    c.agents["m"].kill9()
    c.wait_state("m", "down")
    mid2 = c.submit(h.message(9))
    m2 = wait_outcome(c, mid2, "transient")
    assert "smtp MAIL refused: 421" in m2["attempts"][0]["detail"], m2

    # A 5xx at MAIL refuses the message (the sender) for good.
    fake.mail_reply = "553 5.7.1 sender not allowed"
    mid3 = c.submit(h.message(13))
    m3 = wait_outcome(c, mid3, "permanent")
    assert "smtp MAIL refused: 553" in m3["attempts"][0]["detail"], m3


def test_no_answer_after_data_is_ambiguous(make_cluster, fakes):
    fake = fakes()
    fake.hang_data = True
    ms = int(h.scaled(0.3) * 1000)
    c = smtp_cluster(make_cluster, fake, {"request_timeout_ms": ms})
    c.start_server()
    c.start_agent("s")
    mid = c.submit(h.message(10))
    m = wait_outcome(c, mid, "ambiguous", timeout=h.scaled(10))
    assert wait_received(fake, 1)
    assert "no answer" in m["attempts"][0]["detail"], m


def assert_once_each(c, fake, ids):
    """Each of ids reached the stand-in exactly once, delivered at the
    first attempt: no connection trouble became an outcome."""
    got = [header(m["data"], "Message-ID") for m in fake.messages()]
    assert len(got) == len(ids), got
    for mid in ids:
        assert sum(mid.encode() in g for g in got) == 1, (mid, got)
        atts = c.msg(mid)["attempts"]
        assert [a["outcome"] for a in atts] == ["delivered"], atts


def test_connections_reused_with_starttls_and_auth(make_cluster, fakes,
                                                  certs, tmp_path):
    # One session (TCP, TLS, EHLO, AUTH) per worker, not per message.
    c, fake = tls_auth_relay(make_cluster, fakes, certs, tmp_path)
    ids = c.submit_many(12)
    c.wait_delivered(ids)
    ids += c.submit_many(12, start=12)
    c.wait_delivered(ids)
    assert_once_each(c, fake, ids)
    # 4: max_in_flight, so at most 4 sessions at once.
    assert 1 <= fake.connections <= 4, fake.connections
    assert fake.auth_tries == [True] * fake.connections, fake.auth_tries


def test_idle_connections_closed_by_the_smarthost(make_cluster, fakes,
                                                  certs, tmp_path):
    # The smarthost closes every idle connection (TLS too) before the
    # next message: each still goes out once, at the first attempt.
    c, fake = tls_auth_relay(make_cluster, fakes, certs, tmp_path,
                             idle_timeout=h.scaled(0.2))
    ids = []
    for i in range(3):
        ids.append(c.submit(h.message(20 + i)))
        c.wait_delivered(ids)
        h.wait_for(lambda: fake.closed >= fake.connections, 5,
                   "the stand-in closing its idle connections")
    assert fake.connections == 3, fake.connections
    assert_once_each(c, fake, ids)


def test_connection_dropped_at_mail_is_retried_fresh(make_cluster, fakes):
    # The race a stale connection leaves: it looked alive, and the
    # smarthost closes it with no reply as the next MAIL goes out.
    # Nothing of the message was accepted: it is tried again on a new
    # connection, never recorded as a failure.
    fake = fakes()
    fake.drop_reused = True
    c = smtp_cluster(make_cluster, fake)
    c.start_server()
    c.start_agent("s")
    ids = []
    for i in range(4):
        ids.append(c.submit(h.message(30 + i)))
        c.wait_delivered(ids)
    assert fake.dropped >= 1, "no reused connection was dropped"
    assert_once_each(c, fake, ids)


def test_large_message_dot_stuffed_over_tls(make_cluster, fakes, certs,
                                            tmp_path):
    # About 9 MB over STARTTLS: more than the socket takes at once, so the
    # body goes out in parts as the smarthost reads; lines that start
    # with a dot (one is a lone ".") arrive as written, none ends the
    # data early.
    c, fake = tls_auth_relay(make_cluster, fakes, certs, tmp_path)
    lines = []
    for i in range(200000):
        if i % 7 == 3:
            lines.append(".")
        elif i % 11 == 5:
            lines.append("..%05d" % i)
        else:
            lines.append(".%05d %s" % (i, "x" * 50))
    mid = c.submit(h.message(40, text="\n".join(lines) + "\n"))
    c.wait_delivered([mid], timeout=30)
    got = wait_received(fake, 1)[0]["data"]
    assert len(got) > 9000000, len(got)
    body = got.split(b"\r\n\r\n", 1)[1]
    got_lines = [ln.decode() for ln in body.split(b"\r\n")]
    at = got_lines.index(lines[0])
    assert got_lines[at:at + len(lines)] == lines
    assert c.msg(mid)["attempts"][-1]["outcome"] == "delivered"


def test_transfers_at_once_follow_max_in_flight(make_cluster, fakes):
    # The stand-in answers the data only once 8 transactions wait for
    # their answer together (451 after its deadline): with max_in_flight
    # 8 the connector must have 8 transfers open at once.  A fixed pool
    # of 4 workers held at 4; curl's SMTP on the agent's loop would hold
    # at 1 (libcurl 7.88 waits for the answer to the data inside the
    # multi interface, docs/internals/agent.md).
    fake = fakes()
    fake.hold_data = (8, h.scaled(4))
    c = smtp_cluster(make_cluster, fake, {"max_in_flight": 8})
    c.start_server()
    c.start_agent("s")
    ids = c.submit_many(8)
    wait_received(fake, 8, timeout=8)
    assert fake.peak_waiting == 8, fake.peak_waiting
    c.wait_delivered(ids)
    assert_once_each(c, fake, ids)


@pytest.mark.parametrize("key,value,words", [
    ("tls", "ssl", "tls: must be none, starttls or implicit"),
    ("port", "70000", "port: must be a whole number from 1 to 65535"),
    ("tls_ca_file", "/nonexistent/ca.pem", "tls_ca_file: cannot read"),
    ("username", "relay", "username and password_file go together"),
    ("request_timeout_ms", "0", "request_timeout_ms: must be a whole"),
    ("idle_timeout_ms", "99",
     "idle_timeout_ms: must be a whole number from 100 to 300000"),
    ("idle_timeout_ms", "300001", "idle_timeout_ms: must be a whole"),
    ("tls", "none\nusername = relay\npassword_file = /dev/null",
     "username needs tls = starttls or implicit"),
])
def test_config_checks(tmp_path, key, value, words):
    secret = str(tmp_path / "agent.secret")
    h.Cluster.write_secret(secret, os.urandom(32).hex())
    sec = {"type": "smtp", "spawn": "no", "host": "127.0.0.1",
           key: value}
    text = h.Cluster.render(
        {"data_dir": str(tmp_path / "data"),
         "http_listen": "127.0.0.1:%d" % h.free_port(), "smtp_listen": "",
         "agent_listen": "127.0.0.1:%d" % h.free_port(),
         "agent_secret_file": secret}, {"s": sec})
    path = tmp_path / "bad.ini"
    path.write_text(text)
    p = subprocess.run([h.BIN, "check-config", "-c", str(path)],
                       capture_output=True, text=True,
                       timeout=h.scaled(20))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert words in p.stderr, p.stderr
    at = "username = relay" if "username" in value else "%s = %s" % (
        key, value)
    lineno = text.split("\n").index(at) + 1
    assert "%s:%d:" % (path, lineno) in p.stderr, p.stderr


def test_agent_stops_promptly_with_a_transfer_hanging(make_cluster, fakes):
    # The connector's close ends the transfers under way rather than
    # waiting request_timeout_ms for a reply that never comes.
    fake = fakes()
    fake.hang_data = True
    c = smtp_cluster(make_cluster, fake, {"request_timeout_ms": 60000})
    c.start_server()
    agent = c.start_agent("s")
    c.submit(h.message(12))
    wait_received(fake, 1)
    agent.signal(signal.SIGTERM)
    agent.wait_exit(3)  # scaled inside; raises WaitTimeout


@pytest.mark.parametrize("mode", ["lines", "line"])
def test_smarthost_flooding_a_reply(make_cluster, fakes, mode):
    # A hostile smarthost answers MAIL with megabytes and no final reply:
    # endless "250-" lines, or one line that never ends.  The agent reads
    # and drops them (its memory does not grow with them), gives up at
    # request_timeout_ms, and the attempt is transient: nothing of the
    # message was accepted.
    fake = fakes()
    fake.flood_mail = mode
    ms = int(h.scaled(1.5) * 1000)
    c = smtp_cluster(make_cluster, fake, {"request_timeout_ms": ms})
    c.start_server()
    agent = c.start_agent("s")
    before = h.rss(agent.pid)
    log_before = os.path.getsize(agent.log_path)
    mid = c.submit(h.message(40))
    m = wait_outcome(c, mid, "transient", timeout=h.scaled(10) + ms / 1000)
    assert fake.flooded > 4 << 20, fake.flooded
    grown = h.rss(agent.pid) - before
    assert grown < 8 << 20, "the agent grew %d bytes reading %d" % (
        grown, fake.flooded)
    # Its log says so in a few lines, whatever the smarthost sent.
    assert os.path.getsize(agent.log_path) - log_before < 16384
    assert not fake.messages()
    assert m["attempts"][0]["outcome"] == "transient", m
    assert c.provider("s")["state"] in ("up", "paused"), c.provider("s")
