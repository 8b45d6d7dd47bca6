"""The mailgun connector against its stand-in (tests/fakes/fake_mailgun.py).

One server with two providers under the priority scheduler: mg (type
mailgun, priority 1, pointed at the stand-in) and b (maildir, priority 2),
so every message is offered to mg first.  A rich message (cc, bcc,
reply-to, HTML, an attachment, non-ASCII names, a custom header) reaches
the stand-in as Mailgun wants it, with every envelope recipient, and is
delivered with Mailgun's id; a 400 fails the message without trying b; a
503 is transient and b delivers; a hung API is ambiguous after
request_timeout_ms; a 429 is throttled with its Retry-After; a 401 is the
account's.  Until the dispatcher knows the new classes it records them as
transient, so an attempt may say either; the agent's log names the class
the connector gave.  The planted key appears in no log and no API answer.
"""

import base64
import email.parser
import email.policy
import os
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_mailgun  # noqa: E402

KEY = "mgkey-PLANTED-5b1e77c0ffee-distinctive"
DOMAIN = "mg.example.org"


@pytest.fixture(scope="module")
def env(module_cluster_factory):
    fake = fake_mailgun.FakeMailgun(KEY, DOMAIN).start()
    c = module_cluster_factory(providers=("mg", "b"),
                               server_extra={"scheduler": "priority"})
    keyfile = os.path.join(c.dir, "mailgun.key")
    c.write_secret(keyfile, KEY)

    def write_config():
        mg = {"type": "mailgun", "spawn": "no", "priority": 1,
              "max_in_flight": 8, "api_key_file": keyfile,
              "domain": DOMAIN, "base_url": fake.base_url,
              "connect_timeout_ms": 2000,
              "request_timeout_ms": int(h.scaled(1000))}
        b = c.provider_section("b")
        b.update(priority=2)
        with open(c.config_path, "w") as f:
            f.write(c.render(c.server_section(), {"mg": mg, "b": b}))
    c.write_config = write_config
    c.write_config()
    c.start_server()
    c.start_agent("mg")
    c.start_agent("b")
    yield c, fake
    fake.stop()


def settled(c, mid, timeout=15):
    def cond():
        m = c.msg(mid)
        return m if m["status"] in ("delivered", "failed") else None
    return h.wait_for(cond, timeout, "message %s to settle" % mid)


def agent_outcome(c, mid, outcome):
    """The mg agent logged outcome for mid (its connector's class)."""
    def cond():
        with open(c.agents["mg"].log_path, errors="replace") as f:
            return any(mid in ln and "outcome=" + outcome in ln for ln in f)
    return h.wait_for(cond, 5, "agent log: %s outcome=%s" % (mid, outcome))


def test_rich_message(env):
    c, fake = env
    att = bytes(range(256)) * 4
    msg = h.message(
        1, **{"from": "Zoë Ämtmann <zoe@example.com>",
              "to": ["Jürgen Groß <jg@example.net>"],
              "cc": ["cc1@example.net"], "bcc": ["hidden@example.net"],
              "reply_to": "help@example.com",
              "subject": "Grüße ✓ 1", "html": "<p>héllo</p>",
              "headers": {"X-Campaign": "c1"},
              "attachments": [{"filename": "data.bin",
                               "content_type": "application/octet-stream",
                               "content_base64":
                                   base64.b64encode(att).decode()}]})
    mid = c.submit(msg)
    m = settled(c, mid)
    assert m["status"] == "delivered", m
    assert m["provider"] == "mg", m
    assert len(fake.received) == 1
    rec = fake.received[0]
    assert m["provider_message_id"] == rec["id"], (m, rec)
    assert sorted(rec["to"]) == sorted(
        ["jg@example.net", "cc1@example.net", "hidden@example.net"])
    got = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        rec["message"])
    assert got["Subject"] == "Grüße ✓ 1"
    assert got["From"].addresses[0].display_name == "Zoë Ämtmann"
    assert got["To"].addresses[0].display_name == "Jürgen Groß"
    assert got["Cc"].addresses[0].addr_spec == "cc1@example.net"
    assert got["Bcc"] is None
    assert got["Reply-To"].addresses[0].addr_spec == "help@example.com"
    assert got["X-Campaign"] == "c1"
    assert mid in got["Message-ID"]
    html = got.get_body(("html",))
    assert html is not None and "<p>héllo</p>" in html.get_content()
    atts = list(got.iter_attachments())
    assert len(atts) == 1 and atts[0].get_filename() == "data.bin"
    assert atts[0].get_content() == att


def test_connections_reused(env):
    """30 messages at up to 8 in flight: the agent keeps its connections
    to the API alive and reuses them, so the stand-in sees far fewer
    connections than requests."""
    c, fake = env
    before_conn, before_req = fake.connections, fake.requests
    ids = c.submit_many(30)
    c.wait_delivered(ids, timeout=30)
    assert all(c.msg(i)["provider"] == "mg" for i in ids)
    assert fake.requests - before_req == 30
    assert fake.connections - before_conn <= 8, fake.connections


def test_400_permanent(env):
    c, fake = env
    fake.reject = {"refused@example.net"}
    try:
        mid = c.submit(h.message(2, to=["refused@example.net"]))
        m = settled(c, mid)
    finally:
        fake.reject = set()
    assert m["status"] == "failed", m
    assert [a["provider"] for a in m["attempts"]] == ["mg"], m
    assert m["attempts"][0]["outcome"] == "permanent", m
    assert "not a valid address" in m["attempts"][0]["detail"], m


def test_503_then_b(env):
    c, fake = env
    fake.mode = "503"
    try:
        mid = c.submit(h.message(3))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == "mg", m
    assert m["attempts"][0]["outcome"] == "transient", m
    agent_outcome(c, mid, "transient")


def test_hang_ambiguous(env):
    c, fake = env
    fake.mode = "hang"
    try:
        mid = c.submit(h.message(4))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["outcome"] in ("ambiguous", "transient"), m
    agent_outcome(c, mid, "ambiguous")


def test_429_throttled(env):
    c, fake = env
    fake.mode, fake.retry_after = "429", "3"
    try:
        mid = c.submit(h.message(5))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["attempts"][0]["provider"] == "mg", m
    assert m["attempts"][0]["outcome"] in ("throttled", "transient"), m
    agent_outcome(c, mid, "throttled")


def test_401_account(env):
    c, fake = env
    fake.mode = "401"
    try:
        mid = c.submit(h.message(6))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["attempts"][0]["provider"] == "mg", m
    assert m["attempts"][0]["outcome"] in ("account", "transient"), m
    agent_outcome(c, mid, "account")


def test_key_never_shown(env):
    c, fake = env
    assert fake.requests >= 6
    answers = [c.get("/v1/providers").body, c.get("/v1/stats").body]
    r = c.get("/v1/messages?limit=100")
    answers.append(r.body)
    for a in answers:
        assert KEY.encode() not in a
    for name in os.listdir(c.dir):
        if name.endswith(".log"):
            with open(os.path.join(c.dir, name), "rb") as f:
                assert KEY.encode() not in f.read(), name


def test_config_check(tmp_path):
    """base_url is only scheme://host[:port] and the timeouts are bounded
    numbers: check-config refuses the rest and names the line; a key given
    as env:VAR is taken."""
    import subprocess
    secret = tmp_path / "agent.secret"
    h.Cluster.write_secret(str(secret), "x" * 64)

    def check(extra, env=None):
        lines = ["[server]", "data_dir = %s" % (tmp_path / "data"),
                 "agent_secret_file = %s" % secret, "",
                 "[provider.mg]", "type = mailgun",
                 "api_key_file = env:SHIVNERI_TEST_MG_KEY",
                 "domain = %s" % DOMAIN] + extra
        path = tmp_path / "mg.ini"
        path.write_text("\n".join(lines) + "\n")
        e = dict(os.environ, SHIVNERI_TEST_MG_KEY=KEY)
        p = subprocess.run([h.BIN, "check-config", "-c", str(path)],
                           env=e, capture_output=True, text=True,
                           timeout=h.scaled(20))
        return p.returncode, p.stdout + p.stderr

    rc, out = check(["base_url = http://127.0.0.1:8025"])
    assert rc == 0, out
    assert KEY not in out
    rc, out = check(["base_url = http://127.0.0.1:8025/v3"])
    assert rc == 2 and "base_url" in out and ":9" in out, out
    rc, out = check(["base_url = ftp://example.com"])
    assert rc == 2 and "base_url" in out, out
    rc, out = check(["request_timeout_ms = 0"])
    assert rc == 2 and "request_timeout_ms" in out, out
    rc, out = check(["connect_timeout_ms = 5s"])
    assert rc == 2 and "connect_timeout_ms" in out, out
