"""The postmark connector against its stand-in (tests/fakes/fake_postmark.py).

As test_52_sendgrid.py: sg (type postmark, priority 1) in front of b
(maildir, priority 2) under the priority scheduler.  A rich message
reaches the stand-in as the JSON Postmark wants (it checks the token and
the shape), recipients in To/Cc/Bcc by the envelope and headers, names and
subject decoded, the attachment's bytes intact, the custom header passed,
the message stream set, and is delivered with the MessageID.  A 422
(ErrorCode 406) fails the message without trying b; a 503 is transient
and b delivers; a hung API is ambiguous; a 429 throttled; a 401 the
account's, and the probe (GET /server) brings the provider back.  The
planted token appears in no log and no API answer.
"""

import base64
import os
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_postmark  # noqa: E402

KEY = "PM-PLANTED-postmark-5e2c7f-distinctive"


@pytest.fixture(scope="module")
def env(module_cluster_factory):
    fake = fake_postmark.FakePostmark(KEY).start()
    c = module_cluster_factory(providers=("sg", "b"),
                               server_extra={"scheduler": "priority"})
    keyfile = os.path.join(c.dir, "postmark.key")
    c.write_secret(keyfile, KEY)

    def write_config():
        sg = {"type": "postmark", "spawn": "no", "priority": 1,
              "max_in_flight": 8, "server_token_file": keyfile,
              "message_stream": "outbound",
              "probe_interval_s": 1,
              "base_url": fake.base_url, "connect_timeout_ms": 2000,
              "request_timeout_ms": int(h.scaled(1000))}
        b = c.provider_section("b")
        b.update(priority=2)
        with open(c.config_path, "w") as f:
            f.write(c.render(c.server_section(), {"sg": sg, "b": b}))
    c.write_config = write_config
    c.write_config()
    c.start_server()
    c.start_agent("sg")
    c.start_agent("b")
    yield c, fake
    fake.stop()



@pytest.fixture(autouse=True)
def provider_up(env):
    """Each case starts with the provider up: a 429 pauses it for its
    Retry-After and a 401 takes it down until the next probe interval."""
    env[0].wait_state("sg", "up", timeout=h.scaled(10))

def settled(c, mid, timeout=15):
    def cond():
        m = c.msg(mid)
        return m if m["status"] in ("delivered", "failed") else None
    return h.wait_for(cond, timeout, "message %s to settle" % mid)


def agent_outcome(c, mid, outcome):
    def cond():
        with open(c.agents["sg"].log_path, errors="replace") as f:
            return any(mid in ln and "outcome=" + outcome in ln for ln in f)
    return h.wait_for(cond, 5, "agent log: %s outcome=%s" % (mid, outcome))


def test_rich_message(env):
    c, fake = env
    att = bytes(range(256)) * 4
    msg = h.message(
        1, **{"from": "Zoë Ämtmann <zoe@example.com>",
              "to": ["Jürgen Groß <jg@example.net>"],
              "cc": ["Çelik <cc1@example.net>"],
              "bcc": ["hidden@example.net"],
              "reply_to": "help@example.com",
              "subject": "Grüße ✓ 1", "text": "héllo text\n",
              "html": "<p>héllo</p>",
              "headers": {"X-Campaign": "c1"},
              "attachments": [{"filename": "data.bin",
                               "content_type": "application/octet-stream",
                               "content_base64":
                                   base64.b64encode(att).decode()}]})
    mid = c.submit(msg)
    m = settled(c, mid)
    assert m["status"] == "delivered" and m["provider"] == "sg", m
    assert len(fake.received) == 1
    rec = fake.received[0]
    assert m["provider_message_id"] == rec["id"], (m, rec)
    b = rec["body"]
    assert b["To"] == "jg@example.net"
    assert b["Cc"] == "cc1@example.net"
    assert b["Bcc"] == "hidden@example.net"
    assert b["From"] == '"Zoë Ämtmann" <zoe@example.com>' or \
        b["From"] == "Zoë Ämtmann <zoe@example.com>", b["From"]
    assert b["ReplyTo"] == "help@example.com"
    assert b["Subject"] == "Grüße ✓ 1"
    assert b["MessageStream"] == "outbound"
    assert "héllo text" in b["TextBody"]
    assert "<p>héllo</p>" in b["HtmlBody"]
    assert len(b["Attachments"]) == 1
    a = b["Attachments"][0]
    assert a["Name"] == "data.bin"
    assert a["ContentType"] == "application/octet-stream"
    assert base64.b64decode(a["Content"]) == att
    hdrs = {x["Name"].lower(): x["Value"] for x in b["Headers"]}
    assert hdrs["x-campaign"] == "c1"
    assert mid in hdrs["message-id"], b["Headers"]
    assert "to" not in hdrs and "subject" not in hdrs, hdrs


def test_no_to_goes_elsewhere(env):
    """Postmark requires a To: a Bcc-only message is refused by the
    connector (transient) and b delivers it, nobody's Bcc exposed."""
    c, fake = env
    n = len(fake.received)
    mid = c.submit(h.message(7, to=[], bcc=["x1@example.net"]))
    m = settled(c, mid)
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert len(fake.received) == n


def test_400_permanent(env):
    c, fake = env
    fake.reject = {"refused@example.net"}
    try:
        mid = c.submit(h.message(2, to=["refused@example.net"]))
        m = settled(c, mid)
    finally:
        fake.reject = set()
    assert m["status"] == "failed", m
    assert [a["provider"] for a in m["attempts"]] == ["sg"], m
    assert m["attempts"][0]["outcome"] == "permanent", m
    assert "inactive" in m["attempts"][0]["detail"], m
    assert "code=406" in m["attempts"][0]["detail"], m


def test_503_then_b(env):
    c, fake = env
    fake.mode = "503"
    try:
        mid = c.submit(h.message(3))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == "sg", m
    assert m["attempts"][0]["outcome"] == "transient", m


def test_hang_ambiguous(env):
    c, fake = env
    fake.mode = "hang"
    try:
        mid = c.submit(h.message(4))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["outcome"] == "ambiguous", m
    agent_outcome(c, mid, "ambiguous")


def test_429_throttled(env):
    c, fake = env
    fake.mode, fake.retry_after = "429", "3"
    try:
        mid = c.submit(h.message(5))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["attempts"][0]["provider"] == "sg", m
    assert m["attempts"][0]["outcome"] == "throttled", m
    agent_outcome(c, mid, "throttled")


def test_401_account(env):
    c, fake = env
    fake.mode = "401"
    try:
        mid = c.submit(h.message(6))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["attempts"][0]["provider"] == "sg", m
    assert m["attempts"][0]["outcome"] == "account", m
    agent_outcome(c, mid, "account")
    # The probe, GET /server with the token, brings it back.
    env[0].wait_state("sg", "up", timeout=h.scaled(10))
    assert fake.probes >= 1


def test_key_never_shown(env):
    c, fake = env
    assert fake.requests >= 6
    for path in ("/v1/providers", "/v1/stats", "/v1/messages?limit=100"):
        assert KEY.encode() not in c.get(path).body, path
    for name in os.listdir(c.dir):
        if name.endswith(".log"):
            with open(os.path.join(c.dir, name), "rb") as f:
                assert KEY.encode() not in f.read(), name
