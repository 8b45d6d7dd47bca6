"""Providers and smarthosts that misbehave on purpose (a hostile review of
the agent side, 2026-11-30).  Each test reproduced a defect on c3ee49e.

- An HTTP API that takes a request on a kept-alive connection and drops
  the connection before it answers: libcurl sends the same request again
  on a fresh connection, by itself, so the provider may hold the message
  twice while the attempt read `delivered`; the possible duplicate must be
  on record (`ambiguous`), as the SPEC promises.
- An SMTP smarthost that answers 250 while the body is still going out:
  it claims a message it holds in part, so the attempt is `ambiguous`.
- A provider or smarthost that echoes our secret (the HTTP key as the
  message id; the SMTP password, plain or in AUTH's base64, in a reply, or
  cut short where the reply was truncated): it reached the API answer and
  the logs.
- A supervised agent that hangs (here: SIGSTOP, as a deadlock or a call
  that never returns would): its provider went down and its messages
  moved on, but the agent was never restarted, so the provider stayed down
  for good.  The supervisor now kills an agent silent for 5 heartbeat
  timeouts (at least 5 s) and starts it again.

Stand-ins: tests/fakes/hostile_http.py and hostile_smtp.py, on 127.0.0.1.
Every wait has a deadline (harness wait_for).
"""

import base64
import json
import os
import signal
import sys
import time

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import hostile_http  # noqa: E402
import hostile_smtp  # noqa: E402
import smtp_fake as aio_smtp  # noqa: E402

KEY = "SG.PLANTED-hostile-5e0c2a-distinctive"
PASSWORD = "Pw-hostile-8c1f-distinctive-2718"


@pytest.fixture
def http_fake():
    fakes = []

    def make(mode, **kw):
        f = hostile_http.HostileHttp(mode, **kw).start()
        fakes.append(f)
        return f
    yield make
    for f in fakes:
        f.stop()


def http_cluster(make_cluster, fake):
    """A started server with sg (sendgrid, at fake, priority 1) in front of
    b (maildir, priority 2), and both agents."""
    c = make_cluster(providers=("sg", "b"),
                     server_extra={"scheduler": "priority"})
    keyfile = os.path.join(c.dir, "sg.key")
    c.write_secret(keyfile, KEY)
    sg = {"type": "sendgrid", "spawn": "no", "priority": 1,
          "max_in_flight": 1, "base_url": fake.base_url,
          "api_key_file": keyfile, "connect_timeout_ms": 2000,
          "request_timeout_ms": int(h.scaled(3000))}
    b = c.provider_section("b")
    b.update(priority=2)
    with open(c.config_path, "w") as f:
        f.write(c.render(c.server_section(), {"sg": sg, "b": b}))
    c.start_server()
    c.start_agent("sg")
    c.start_agent("b")
    return c


def settled(c, mid, timeout=15):
    def cond():
        m = c.msg(mid)
        return m if m["status"] in ("delivered", "failed") else None
    return h.wait_for(cond, timeout, "message %s to settle" % mid)


def copies(fake, subject):
    """How many requests the stand-in read whole for subject."""
    return sum(1 for b in fake.bodies()
               if json.loads(b).get("subject") == subject)


def test_http_resend_on_a_dropped_reused_connection(make_cluster, http_fake):
    fake = http_fake("drop_reused")
    c = http_cluster(make_cluster, fake)
    first = c.submit(h.message(1))
    m = settled(c, first)
    assert m["status"] == "delivered" and m["provider"] == "sg", m

    # The kept connection is reused for the next message; the stand-in
    # takes that request and drops the connection without an answer.
    mid = c.submit(h.message(2))
    m = settled(c, mid)
    assert m["status"] == "delivered", m
    sent = copies(fake, "test 2")
    assert sent >= 1
    outcomes = [(a["provider"], a["outcome"]) for a in m["attempts"]]
    # Each copy the provider holds is an attempt on record: the first,
    # answered by nothing, is a possible duplicate.
    assert ("sg", "ambiguous") in outcomes, (sent, m["attempts"])
    assert sent == sum(1 for p, _ in outcomes if p == "sg"), \
        (sent, m["attempts"])
    # And the message still went out: to b, as a retry goes to another
    # provider while one is up.
    assert m["provider"] == "b", m
    assert KEY not in json.dumps(m)


def test_http_redirect_not_followed(make_cluster, http_fake):
    """Held on c3ee49e, kept as a guard: a 307 to another host is not
    followed (the key would go with it); the attempt is transient and b
    delivers."""
    other = http_fake("ok")
    fake = http_fake("redirect", redirect_to=other.base_url)
    c = http_cluster(make_cluster, fake)
    m = settled(c, c.submit(h.message(1)))
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert [(a["provider"], a["outcome"]) for a in m["attempts"]][0] == \
        ("sg", "transient"), m["attempts"]
    assert len(fake.requests) == 1 and other.connections == 0

def test_http_key_echoed_as_the_id(make_cluster, http_fake):
    """A 2xx whose id is our key (a provider or proxy that reflects the
    Authorization header): delivered, with the key blotted out of the id,
    as it already was out of a failure's words."""
    fake = http_fake("echo_key")
    c = http_cluster(make_cluster, fake)
    mid = c.submit(h.message(1))
    m = settled(c, mid)
    assert m["status"] == "delivered" and m["provider"] == "sg", m
    # Booleans only: a failure must not print the key either.
    leaked = KEY in json.dumps(m)
    assert not leaked, "the key is in the message's API answer"
    assert m["provider_message_id"].startswith("Bearer ***"), m
    for name in sorted(os.listdir(c.dir)):
        path = os.path.join(c.dir, name)
        if name.endswith(".log") and os.path.isfile(path):
            with open(path, "rb") as f:
                leaked = KEY.encode() in f.read()
            assert not leaked, "the key is in %s" % name


# ------------------------------------------------------------------ SMTP


@pytest.fixture
def smtp_fake():
    fakes = []

    def make(mode):
        f = hostile_smtp.HostileSmtp(mode).start()
        fakes.append(f)
        return f
    yield make
    for f in fakes:
        f.stop()


def smtp_cluster(make_cluster, fake, **extra):
    """A started server with s (smtp, at fake, priority 1) in front of b
    (maildir, priority 2), and both agents."""
    c = make_cluster(providers=("s", "b"),
                     server_extra={"scheduler": "priority"},
                     provider_extra={"priority": 2})
    keys = {"priority": 1, "connect_timeout_ms": int(h.scaled(1000)),
            "request_timeout_ms": int(h.scaled(3000))}
    keys.update(extra)
    c.smtp_provider("s", fake.port, **keys)
    c.start_server()
    c.start_agent("s")
    c.start_agent("b")
    return c


def big_text(nbytes):
    line = "a line of the body, long enough to fill it up quickly. 0123\n"
    return line * (nbytes // len(line) + 1)


def test_smtp_250_before_the_dot(make_cluster, smtp_fake):
    fake = smtp_fake("early_250")
    c = smtp_cluster(make_cluster, fake)
    # Far more than the socket buffers hold while the stand-in reads
    # nothing: the 250 arrives while the body is still going out.
    mid = c.submit(h.message(1, text=big_text(3 << 20)))
    m = settled(c, mid, timeout=h.scaled(20))
    outcomes = [(a["provider"], a["outcome"]) for a in m["attempts"]]
    assert ("s", "ambiguous") in outcomes, m["attempts"]
    detail = [a["detail"] for a in m["attempts"] if a["provider"] == "s"][0]
    assert "before the end of the data" in detail, detail
    assert m["status"] == "delivered" and m["provider"] == "b", m


def test_smtp_password_echoed(make_cluster, tmp_path):
    """A smarthost that echoes the password (plain, or the base64 AUTH
    PLAIN and LOGIN sent) in its replies: the id, the detail and the logs
    show none of it, nor a start of it cut short by a reply's truncation."""
    certs = aio_smtp.make_certs(str(tmp_path))
    fake = aio_smtp.SmtpFake(h.free_port(), tls="starttls", certs=certs,
                             user="relay", password=PASSWORD).start()
    try:
        pw = str(tmp_path / "smtp.pw")
        h.Cluster.write_secret(pw, PASSWORD)
        c = smtp_cluster(make_cluster, fake, tls="starttls",
                         username="relay", password_file=pw,
                         tls_ca_file=certs[0])
        plain = base64.b64encode(b"\0relay\0" + PASSWORD.encode()).decode()
        login = base64.b64encode(PASSWORD.encode()).decode()
        forms = (PASSWORD, plain, login)

        fake.data_reply = "250 2.0.0 Ok: queued as %s" % PASSWORD
        m1 = settled(c, c.submit(h.message(1)))
        assert m1["status"] == "delivered" and m1["provider"] == "s", \
            m1["status"]
        fake.data_reply = None
        fake.mail_reply = "451 4.7.0 you said %s and %s" % (plain, login)
        m2 = settled(c, c.submit(h.message(2)))
        # The reply is cut at 200 bytes: the password starts at 190.
        fake.mail_reply = "451 4.7.0 " + "x" * 180 + PASSWORD
        m3 = settled(c, c.submit(h.message(3)))
        fake.mail_reply = None
        for m in (m2, m3):
            assert m["status"] == "delivered" and m["provider"] == "b", \
                m["status"]
        text = json.dumps([m1, m2, m3])
        for name in sorted(os.listdir(c.dir)):
            path = os.path.join(c.dir, name)
            if name.endswith(".log") and os.path.isfile(path):
                with open(path, errors="replace") as f:
                    text += f.read()
    finally:
        fake.stop()
    # Booleans only: a failure must not print the secret either.
    for i, form in enumerate(forms):
        leaked = form in text
        assert not leaked, "form %d of the password leaked" % i
    leaked = PASSWORD[:6] in text
    assert not leaked, "a start of the password leaked"
    assert "451 4.7.0 you said" in text


def test_smtp_drop_after_the_dot(make_cluster, smtp_fake):
    """Held on c3ee49e, kept as a guard: the whole message and its dot
    went out, then the smarthost dropped the connection with no reply: it
    may have queued it, so the attempt is ambiguous and b delivers."""
    fake = smtp_fake("drop_after_dot")
    c = smtp_cluster(make_cluster, fake)
    m = settled(c, c.submit(h.message(1)))
    assert len(fake.messages) == 1
    assert [(a["provider"], a["outcome"]) for a in m["attempts"]] == \
        [("s", "ambiguous"), ("b", "delivered")], m["attempts"]


def test_smtp_no_verdict_after_the_dot(make_cluster, smtp_fake):
    """The whole message and its dot went out, and the smarthost answered
    "354", which is no verdict, and closed: it may have queued the
    message, so the attempt is ambiguous, as after silence, and b
    delivers.  Until 2026-12-01 the attempt read transient."""
    fake = smtp_fake("no_verdict_after_dot")
    c = smtp_cluster(make_cluster, fake)
    m = settled(c, c.submit(h.message(1)))
    assert len(fake.messages) == 1
    assert [(a["provider"], a["outcome"]) for a in m["attempts"]] == \
        [("s", "ambiguous"), ("b", "delivered")], m["attempts"]
    assert "no verdict after the data: 354" in m["attempts"][0]["detail"]


def test_smtp_greeting_never_comes(make_cluster, smtp_fake):
    """A smarthost that accepts and never greets: the session's connect
    times out, nothing of the message was sent, so the attempt is
    transient (not ambiguous) and b delivers, within the timeouts."""
    fake = smtp_fake("no_greeting")
    c = smtp_cluster(make_cluster, fake)
    t0 = time.monotonic()
    m = settled(c, c.submit(h.message(1)))
    assert time.monotonic() - t0 < h.scaled(10)
    assert fake.mails == 0 and not fake.messages
    assert [(a["provider"], a["outcome"]) for a in m["attempts"]] == \
        [("s", "transient"), ("b", "delivered")], m["attempts"]


def test_smtp_idle_chatter_is_no_answer(make_cluster, smtp_fake):
    """A smarthost that, between transactions, keeps sending continuation
    lines ("250-still here") and never a final reply: the next message
    reads its own MAIL's answer, not the chatter, and is delivered by s
    whole."""
    fake = smtp_fake("idle_chatter")
    c = smtp_cluster(make_cluster, fake)
    m1 = settled(c, c.submit(h.message(1)))
    time.sleep(0.3)  # chatter piles up on the idle session meanwhile
    m2 = settled(c, c.submit(h.message(2)))
    for m in (m1, m2):
        assert [(a["provider"], a["outcome"]) for a in m["attempts"]] == \
            [("s", "delivered")], m["attempts"]
    assert len(fake.messages) == 2


def test_smtp_ehlo_flood(make_cluster, smtp_fake):
    """EHLO answered with endless "250-" lines (curl's half of the
    session, not ours): the agent's memory does not grow with them, the
    session gives up (libcurl 7.88 stops at 300 KiB of reply: "Too large
    response headers"; request_timeout_ms would otherwise), the attempt
    is transient (nothing was sent) and b delivers."""
    fake = smtp_fake("ehlo_flood")
    c = smtp_cluster(make_cluster, fake)
    agent = c.agents["s"]
    before = h.rss(agent.pid)
    m = settled(c, c.submit(h.message(1)), timeout=h.scaled(15))
    assert fake.flooded > 256 << 10, fake.flooded
    grown = h.rss(agent.pid) - before
    assert grown < 8 << 20, "the agent grew %d bytes reading %d" % (
        grown, fake.flooded)
    assert fake.mails == 0 and not fake.messages
    assert [(a["provider"], a["outcome"]) for a in m["attempts"]] == \
        [("s", "transient"), ("b", "delivered")], m["attempts"]


@pytest.mark.parametrize("mode", ["ok", "starttls_broken"])
def test_smtp_starttls_required(make_cluster, smtp_fake, mode):
    """tls = starttls against a smarthost that does not offer STARTTLS
    ("ok"), or offers it and then speaks no TLS: the session fails before
    MAIL, nothing goes in plaintext, the attempt is transient and b
    delivers."""
    fake = smtp_fake(mode)
    c = smtp_cluster(make_cluster, fake, tls="starttls")
    m = settled(c, c.submit(h.message(1)))
    assert fake.mails == 0 and not fake.messages
    assert [(a["provider"], a["outcome"]) for a in m["attempts"]] == \
        [("s", "transient"), ("b", "delivered")], m["attempts"]


def test_smtp_ehlo_refused_after_its_extensions(make_cluster, smtp_fake):
    """EHLO's "250-" lines list extensions and its last line says 550:
    libcurl falls back to HELO, and the session has no extension, so MAIL
    goes without SIZE= (a HELO-only server refuses parameters with 555).
    Until 2026-12-01 the extensions of the refused EHLO were kept: MAIL
    said SIZE=, got 555, and the message failed for good."""
    fake = smtp_fake("ehlo_refused_late")
    c = smtp_cluster(make_cluster, fake)
    m = settled(c, c.submit(h.message(1)))
    assert [(a["provider"], a["outcome"]) for a in m["attempts"]] == \
        [("s", "delivered")], m["attempts"]
    assert len(fake.messages) == 1


# ------------------------------------------------------------ supervisor


def test_hung_agent_restarted(make_cluster):
    c = make_cluster(providers=("a", "b"), spawn=True)
    c.start_server()
    old = c.wait_state("a", "up", timeout=10)["pid"]
    c.wait_state("b", "up", timeout=10)
    os.kill(old, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        c.wait_state("a", "down", timeout=5)
        ids = c.submit_many(6, threads=1)

        def restarted():
            p = c.provider("a")
            if p["state"] == "up" and p["pid"] not in (None, old):
                return p
            return None
        h.wait_for(restarted, 12, "hung agent a killed and restarted")
    finally:
        if h.pid_alive(old):
            os.kill(old, signal.SIGCONT)
    took = time.monotonic() - t0
    # 5 s of silence, the watch's second, and a start.
    assert took >= 4.5, took
    assert not h.pid_alive(old)
    with open(c.server.log_path, errors="replace") as f:
        hung = [ln for ln in f if " hung provider=a " in ln]
    assert len(hung) == 1, hung
    c.wait_delivered(ids, timeout=20)
    more = c.submit_many(6, threads=1, start=100)
    c.wait_delivered(more, timeout=20)
    where = h.check_delivery(c, more, ["a", "b"])
    assert where.get("a"), where
