"""The sparkpost connector against its stand-in (tests/fakes/fake_sparkpost.py).

As test_51_mailgun.py: sp (type sparkpost, priority 1) in front of b
(maildir, priority 2) under the priority scheduler.  A rich message
reaches the stand-in as raw MIME (content.email_rfc822) with every envelope
recipient, and is delivered with SparkPost's id; a recipient SparkPost
rejects fails the message without trying b; a 503 is transient and b
delivers; a hung API is ambiguous; a 429 throttled; a 401 and a 420 (a
sending limit) the account's (an attempt may say transient until the
dispatcher knows the new classes; the agent's log names the class).  The
planted key appears in no log and no API answer.
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
import fake_sparkpost  # noqa: E402

KEY = "PLANTED-sparkpost-0c8e3a-distinctive"


@pytest.fixture(scope="module")
def env(module_cluster_factory):
    fake = fake_sparkpost.FakeSparkPost(KEY).start()
    c = module_cluster_factory(providers=("sp", "b"),
                               server_extra={"scheduler": "priority"})
    keyfile = os.path.join(c.dir, "sparkpost.key")
    c.write_secret(keyfile, KEY)

    def write_config():
        sp = {"type": "sparkpost", "spawn": "no", "priority": 1,
              "max_in_flight": 8, "api_key_file": keyfile,
              "base_url": fake.base_url, "connect_timeout_ms": 2000,
              "request_timeout_ms": int(h.scaled(1000))}
        b = c.provider_section("b")
        b.update(priority=2)
        with open(c.config_path, "w") as f:
            f.write(c.render(c.server_section(), {"sp": sp, "b": b}))
    c.write_config = write_config
    c.write_config()
    c.start_server()
    c.start_agent("sp")
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
        with open(c.agents["sp"].log_path, errors="replace") as f:
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
    assert m["status"] == "delivered" and m["provider"] == "sp", m
    assert len(fake.received) == 1
    rec = fake.received[0]
    assert m["provider_message_id"] == rec["id"], (m, rec)
    b = rec["body"]
    assert sorted(r["address"]["email"] for r in b["recipients"]) == sorted(
        ["jg@example.net", "cc1@example.net", "hidden@example.net"])
    assert list(b["content"]) == ["email_rfc822"]
    got = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        b["content"]["email_rfc822"].encode())
    assert got["Subject"] == "Grüße ✓ 1"
    assert got["From"].addresses[0].display_name == "Zoë Ämtmann"
    assert got["To"].addresses[0].display_name == "Jürgen Groß"
    assert got["Bcc"] is None
    assert got["Reply-To"].addresses[0].addr_spec == "help@example.com"
    assert got["X-Campaign"] == "c1"
    assert mid in got["Message-ID"]
    assert "<p>héllo</p>" in got.get_body(("html",)).get_content()
    atts = list(got.iter_attachments())
    assert len(atts) == 1 and atts[0].get_content() == att


def test_rejected_permanent(env):
    c, fake = env
    fake.reject = {"refused@example.net"}
    try:
        mid = c.submit(h.message(2, to=["refused@example.net"]))
        m = settled(c, mid)
    finally:
        fake.reject = set()
    assert m["status"] == "failed", m
    assert [a["provider"] for a in m["attempts"]] == ["sp"], m
    assert m["attempts"][0]["outcome"] == "permanent", m
    assert "no recipient accepted" in m["attempts"][0]["detail"], m


def test_partial_delivered(env):
    """Some recipients rejected: SparkPost sent to the others, so the
    message is delivered (resending would duplicate) and the detail says
    how many were rejected."""
    c, fake = env
    fake.reject = {"refused@example.net"}
    try:
        mid = c.submit(h.message(9, to=["ok@example.net",
                                        "refused@example.net"]))
        m = settled(c, mid)
    finally:
        fake.reject = set()
    assert m["status"] == "delivered" and m["provider"] == "sp", m
    assert [a["provider"] for a in m["attempts"]] == ["sp"], m
    assert "rejected 1" in (m["attempts"][0]["detail"] or ""), m


def test_503_then_b(env):
    c, fake = env
    fake.mode = "503"
    try:
        mid = c.submit(h.message(3))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == "sp", m
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
    assert m["attempts"][0]["provider"] == "sp", m
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
    assert m["attempts"][0]["provider"] == "sp", m
    assert m["attempts"][0]["outcome"] in ("account", "transient"), m
    agent_outcome(c, mid, "account")


def test_420_account(env):
    c, fake = env
    fake.mode = "420"
    try:
        mid = c.submit(h.message(8))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["attempts"][0]["provider"] == "sp", m
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
