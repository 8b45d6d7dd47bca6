"""The brevo connector against its stand-in (tests/fakes/fake_brevo.py).

As test_56_postmark.py: bv (type brevo, priority 1) in front of b
(maildir, priority 2) under the priority scheduler.  A rich message
reaches the stand-in as the JSON Brevo wants (it checks the api-key and
the shape), recipients in to/cc/bcc by the envelope and headers as
{email, name}, names and subject decoded, the attachment's bytes intact,
the custom header passed, and is delivered with the messageId.  A Bcc-only
message goes to b (Brevo requires a to).  A 400 invalid_parameter fails
the message without trying b; a 503 is transient and b delivers; a hung
API is ambiguous; a 429 throttled and paused for x-sib-ratelimit-reset; a
401, a 402 (no credit) and an unvalidated sender (400 unauthorized) the
account's, and the probe (GET /v3/account, counted by the stand-in) keeps
it down while the key is refused and brings it back once taken.  The
planted key appears in no log, no check-config output and no API answer.
"""

import base64
import datetime
import os
import subprocess
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_brevo  # noqa: E402

KEY = "xkeysib-PLANTED-brevo-9d41b6-distinctive"


@pytest.fixture(scope="module")
def env(module_cluster_factory):
    fake = fake_brevo.FakeBrevo(KEY).start()
    c = module_cluster_factory(providers=("bv", "b"),
                               server_extra={"scheduler": "priority"})
    keyfile = os.path.join(c.dir, "brevo.key")
    c.write_secret(keyfile, KEY)

    def write_config():
        bv = {"type": "brevo", "spawn": "no", "priority": 1,
              "max_in_flight": 8, "api_key_file": keyfile,
              "probe_interval_s": 1,
              "base_url": fake.base_url, "connect_timeout_ms": 2000,
              "request_timeout_ms": int(h.scaled(1000))}
        b = c.provider_section("b")
        b.update(priority=2)
        with open(c.config_path, "w") as f:
            f.write(c.render(c.server_section(), {"bv": bv, "b": b}))
    c.write_config = write_config
    c.write_config()
    c.start_server()
    c.start_agent("bv")
    c.start_agent("b")
    yield c, fake
    fake.stop()


@pytest.fixture(autouse=True)
def provider_up(env):
    """Each case starts with the provider up: a 429 pauses it for the
    reset and an account fault takes it down until a probe passes."""
    env[0].wait_state("bv", "up", timeout=h.scaled(10))


def settled(c, mid, timeout=15):
    def cond():
        m = c.msg(mid)
        return m if m["status"] in ("delivered", "failed") else None
    return h.wait_for(cond, timeout, "message %s to settle" % mid)


def agent_outcome(c, mid, outcome):
    def cond():
        with open(c.agents["bv"].log_path, errors="replace") as f:
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
              "attachments": [{"filename": "data.pdf",
                               "content_type": "application/pdf",
                               "content_base64":
                                   base64.b64encode(att).decode()}]})
    mid = c.submit(msg)
    m = settled(c, mid)
    assert m["status"] == "delivered" and m["provider"] == "bv", m
    assert len(fake.received) == 1
    rec = fake.received[0]
    assert m["provider_message_id"] == rec["id"], (m, rec)
    b = rec["body"]
    assert b["sender"] == {"email": "zoe@example.com",
                           "name": "Zoë Ämtmann"}, b["sender"]
    assert b["to"] == [{"email": "jg@example.net", "name": "Jürgen Groß"}]
    assert b["cc"] == [{"email": "cc1@example.net", "name": "Çelik"}]
    assert b["bcc"] == [{"email": "hidden@example.net"}]
    assert b["replyTo"] == {"email": "help@example.com"}
    assert b["subject"] == "Grüße ✓ 1"
    assert "héllo text" in b["textContent"]
    assert "<p>héllo</p>" in b["htmlContent"]
    assert len(b["attachment"]) == 1
    a = b["attachment"][0]
    assert a["name"] == "data.pdf"
    assert base64.b64decode(a["content"]) == att
    hdrs = {k.lower(): v for k, v in b["headers"].items()}
    assert hdrs["x-campaign"] == "c1"
    assert mid in hdrs["message-id"], b["headers"]
    assert "to" not in hdrs and "subject" not in hdrs, hdrs


def test_no_to_goes_elsewhere(env):
    """Brevo requires a to: a Bcc-only message is refused by the
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
    assert [a["provider"] for a in m["attempts"]] == ["bv"], m
    assert m["attempts"][0]["outcome"] == "permanent", m
    assert "code=invalid_parameter" in m["attempts"][0]["detail"], m


def test_503_then_b(env):
    c, fake = env
    fake.mode = "503"
    try:
        mid = c.submit(h.message(3))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == "bv", m
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


def test_429_paused_for_reset(env):
    """No Retry-After: the pause is x-sib-ratelimit-reset's 3 s, not the
    1 s a throttle without a wait gets; the try is not counted."""
    c, fake = env
    fake.mode, fake.retry_after = "429", "3"
    try:
        t0 = datetime.datetime.now(datetime.timezone.utc)
        mid = c.submit(h.message(5))
        p = c.wait_state("bv", "paused", timeout=h.scaled(5))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == "bv", m
    assert m["attempts"][0]["outcome"] == "throttled", m
    assert m["attempt_count"] == 1, m
    until = datetime.datetime.fromisoformat(
        p["paused_until"].replace("Z", "+00:00"))
    assert (until - t0).total_seconds() >= 2, (t0, p)
    agent_outcome(c, mid, "throttled")


def account_case(c, fake, mode, n, words):
    """mode makes an account fault; the provider is down, probed, and up
    again once the stand-in takes the key again."""
    fake.mode = mode
    try:
        mid = c.submit(h.message(n))
        m = settled(c, mid)
        assert m["status"] == "delivered" and m["provider"] == "b", m
        assert m["attempts"][0]["provider"] == "bv", m
        assert m["attempts"][0]["outcome"] == "account", m
        assert words in m["attempts"][0]["detail"], m
        p = c.wait_state("bv", "down", timeout=h.scaled(5))
        assert p["reason"].startswith("account: "), p
        return fake.probes
    finally:
        if mode != "401":
            fake.mode = "ok"


def test_401_account_until_probe(env):
    c, fake = env
    probes = account_case(c, fake, "401", 6, "code=unauthorized")
    try:
        # A probe refused with the key: still down.
        h.wait_for(lambda: fake.probes >= probes + 1, h.scaled(6),
                   "a refused probe")
        assert c.provider("bv")["state"] == "down"
    finally:
        fake.mode = "ok"
    n = fake.probes
    c.wait_state("bv", "up", timeout=h.scaled(10))
    assert fake.probes > n


def test_402_no_credit_account(env):
    c, fake = env
    account_case(c, fake, "credit", 8, "not_enough_credits")
    c.wait_state("bv", "up", timeout=h.scaled(10))


def test_unvalidated_sender_account(env):
    c, fake = env
    account_case(c, fake, "sender", 9, "Validate your sender")
    c.wait_state("bv", "up", timeout=h.scaled(10))


@pytest.mark.parametrize("status,body,outcome", [
    (403, {"code": "permission_denied", "message": "IP not allowed"},
     "account"),
    (413, {"code": "bad_request", "message": "Request too large"},
     "permanent"),
    (404, {"code": "document_not_found", "message": "Not found"},
     "transient"),
    (500, {"code": "internal_error", "message": "oops"}, "transient"),
])
def test_other_rows(env, status, body, outcome):
    """The table's other rows, answered as such by the stand-in."""
    c, fake = env
    fake.answer = (status, body)
    try:
        mid = c.submit(h.message(11))
        m = settled(c, mid)
    finally:
        fake.answer = None
    assert m["attempts"][0]["provider"] == "bv", m
    assert m["attempts"][0]["outcome"] == outcome, m
    assert "code=" + body["code"] in m["attempts"][0]["detail"], m
    if outcome == "permanent":
        assert m["status"] == "failed" and len(m["attempts"]) == 1, m
    else:
        assert m["status"] == "delivered" and m["provider"] == "b", m


def test_201_without_id_delivered(env):
    """Accepted without a messageId: delivered (sending again would
    duplicate), with no provider id."""
    c, fake = env
    fake.answer = (201, {})
    try:
        mid = c.submit(h.message(12))
        m = settled(c, mid)
    finally:
        fake.answer = None
    assert m["status"] == "delivered" and m["provider"] == "bv", m
    assert not m["provider_message_id"], m


def test_key_never_shown(env):
    c, fake = env
    assert fake.requests >= 8
    for path in ("/v1/providers", "/v1/stats", "/v1/messages?limit=100"):
        assert KEY.encode() not in c.get(path).body, path
    r = subprocess.run([h.BIN, "check-config", "-c", c.config_path],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r
    assert KEY.encode() not in r.stdout + r.stderr
    with open(c.config_path, "rb") as f:
        assert KEY.encode() not in f.read()
    for name in os.listdir(c.dir):
        if name.endswith(".log"):
            with open(os.path.join(c.dir, name), "rb") as f:
                assert KEY.encode() not in f.read(), name
