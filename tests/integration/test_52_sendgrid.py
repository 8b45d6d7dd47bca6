"""The sendgrid connector against its stand-in (tests/fakes/fake_sendgrid.py).

As test_51_mailgun.py: sg (type sendgrid, priority 1) in front of b
(maildir, priority 2) under the priority scheduler.  A rich message
reaches the stand-in as the JSON SendGrid wants (it checks the shape and
limits), recipients in to/cc/bcc by the envelope and headers, names and
subject decoded, HTML after text, the attachment's bytes intact, the custom
header passed, and is delivered with the X-Message-Id; Bcc-only
recipients each get a personalization of their own.  A 400 fails the
message without trying b; a 503 is transient and b delivers; a hung API is
ambiguous; a 429 throttled; a 401 the account's (an attempt may say
transient until the dispatcher knows the new classes; the agent's log
names the class).  The planted key appears in no log and no API answer.
"""

import base64
import os
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_sendgrid  # noqa: E402

KEY = "SG.PLANTED-sendgrid-9d41ab-distinctive"


@pytest.fixture(scope="module")
def env(module_cluster_factory):
    fake = fake_sendgrid.FakeSendGrid(KEY).start()
    c = module_cluster_factory(providers=("sg", "b"),
                               server_extra={"scheduler": "priority"})
    keyfile = os.path.join(c.dir, "sendgrid.key")
    c.write_secret(keyfile, KEY)

    def write_config():
        sg = {"type": "sendgrid", "spawn": "no", "priority": 1,
              "max_in_flight": 8, "api_key_file": keyfile,
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
    p = b["personalizations"]
    assert len(p) == 1
    assert p[0]["to"] == [{"email": "jg@example.net", "name": "Jürgen Groß"}]
    assert p[0]["cc"] == [{"email": "cc1@example.net", "name": "Çelik"}]
    assert p[0]["bcc"] == [{"email": "hidden@example.net"}]
    assert b["from"] == {"email": "zoe@example.com", "name": "Zoë Ämtmann"}
    assert b["reply_to"] == {"email": "help@example.com"}
    assert b["subject"] == "Grüße ✓ 1"
    assert [x["type"] for x in b["content"]] == ["text/plain", "text/html"]
    assert "héllo text" in b["content"][0]["value"]
    assert "<p>héllo</p>" in b["content"][1]["value"]
    assert len(b["attachments"]) == 1
    a = b["attachments"][0]
    assert a["filename"] == "data.bin"
    assert a["type"] == "application/octet-stream"
    assert a["disposition"] == "attachment"
    assert base64.b64decode(a["content"]) == att
    assert b["headers"]["X-Campaign"] == "c1"
    hdrs = {k.lower(): v for k, v in b["headers"].items()}
    assert mid in hdrs["message-id"], b["headers"]


def test_bcc_only(env):
    """SendGrid needs a "to": Bcc-only recipients get a personalization
    each, with themselves as "to", so none sees another."""
    c, fake = env
    n = len(fake.received)
    mid = c.submit(h.message(7, to=[], bcc=["x1@example.net",
                                            "x2@example.net"]))
    m = settled(c, mid)
    assert m["status"] == "delivered" and m["provider"] == "sg", m
    pers = fake.received[n]["body"]["personalizations"]
    assert sorted(p["to"][0]["email"] for p in pers) == \
        ["x1@example.net", "x2@example.net"]
    assert all(list(p) == ["to"] and len(p["to"]) == 1 for p in pers), pers


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
    assert "valid address" in m["attempts"][0]["detail"], m


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
    assert m["attempts"][0]["provider"] == "sg", m
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
    assert m["attempts"][0]["provider"] == "sg", m
    assert m["attempts"][0]["outcome"] in ("account", "transient"), m
    agent_outcome(c, mid, "account")


def test_key_never_shown(env):
    c, fake = env
    assert fake.requests >= 6
    for path in ("/v1/providers", "/v1/stats", "/v1/messages?limit=100"):
        assert KEY.encode() not in c.get(path).body, path
    for name in os.listdir(c.dir):
        if name.endswith(".log"):
            with open(os.path.join(c.dir, name), "rb") as f:
                assert KEY.encode() not in f.read(), name
