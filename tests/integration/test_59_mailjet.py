"""The mailjet connector against its stand-in (tests/fakes/fake_mailjet.py).

As test_58_brevo.py: mj (type mailjet, priority 1) in front of b
(maildir, priority 2) under the priority scheduler.  A rich message
reaches the stand-in as one entry of Send API v3.1's "Messages" (it checks
Basic auth key:secret and the shape), recipients in To/Cc/Bcc by the
envelope and headers as {Email, Name}, names and subject decoded, the
attachment's bytes intact, the custom header passed, our message id as
CustomID, and is delivered with the MessageIDs of every recipient.  An
answer that leaves a recipient out is still delivered, the count in the
detail.  A Bcc-only message goes to b.  A 400 mj-0013 fails the message
without trying b; a 503 is transient and b delivers; a hung API is
ambiguous; a 429 throttled; a 401 and an unauthorized sender (send-0008)
the account's, and the probe (GET /v3/REST/sender, counted by the
stand-in) keeps it down while the keys are refused and brings it back
once taken.  The planted key and secret (and their Basic encoding) appear
in no log, no check-config output and no API answer.
"""

import base64
import os
import subprocess
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_mailjet  # noqa: E402

KEY = "PLANTEDmailjetkey0c83e1distinctive"
SECRET = "PLANTEDmailjetsecret5fa27bdistinctive"
PLANTED = (KEY.encode(), SECRET.encode(),
           base64.b64encode(("%s:%s" % (KEY, SECRET)).encode()))


@pytest.fixture(scope="module")
def env(module_cluster_factory):
    fake = fake_mailjet.FakeMailjet(KEY, SECRET).start()
    c = module_cluster_factory(providers=("mj", "b"),
                               server_extra={"scheduler": "priority"})
    keyfile = os.path.join(c.dir, "mailjet.key")
    secretfile = os.path.join(c.dir, "mailjet.secret")
    c.write_secret(keyfile, KEY)
    c.write_secret(secretfile, SECRET)

    def write_config():
        mj = {"type": "mailjet", "spawn": "no", "priority": 1,
              "max_in_flight": 8, "api_key_file": keyfile,
              "secret_key_file": secretfile, "probe_interval_s": 1,
              "base_url": fake.base_url, "connect_timeout_ms": 2000,
              "request_timeout_ms": int(h.scaled(1000))}
        b = c.provider_section("b")
        b.update(priority=2)
        with open(c.config_path, "w") as f:
            f.write(c.render(c.server_section(), {"mj": mj, "b": b}))
    c.write_config = write_config
    c.write_config()
    c.start_server()
    c.start_agent("mj")
    c.start_agent("b")
    yield c, fake
    fake.stop()


@pytest.fixture(autouse=True)
def provider_up(env):
    """Each case starts with the provider up: a 429 pauses it for its
    Retry-After and an account fault takes it down until a probe passes."""
    env[0].wait_state("mj", "up", timeout=h.scaled(10))


def settled(c, mid, timeout=15):
    def cond():
        m = c.msg(mid)
        return m if m["status"] in ("delivered", "failed") else None
    return h.wait_for(cond, timeout, "message %s to settle" % mid)


def agent_outcome(c, mid, outcome):
    def cond():
        with open(c.agents["mj"].log_path, errors="replace") as f:
            return any(mid in ln and "outcome=" + outcome in ln for ln in f)
    return h.wait_for(cond, 5, "agent log: %s outcome=%s" % (mid, outcome))


def listed_ids(answer):
    return ",".join(str(r["MessageID"]) for f in ("To", "Cc", "Bcc")
                    for r in answer.get(f, []))


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
    assert m["status"] == "delivered" and m["provider"] == "mj", m
    assert len(fake.received) == 1
    rec = fake.received[0]
    assert m["provider_message_id"] == listed_ids(rec["answer"]), (m, rec)
    assert len(m["provider_message_id"].split(",")) == 3, m
    b = rec["body"]
    assert b["From"] == {"Email": "zoe@example.com", "Name": "Zoë Ämtmann"}
    assert b["To"] == [{"Email": "jg@example.net", "Name": "Jürgen Groß"}]
    assert b["Cc"] == [{"Email": "cc1@example.net", "Name": "Çelik"}]
    assert b["Bcc"] == [{"Email": "hidden@example.net"}]
    assert b["ReplyTo"] == {"Email": "help@example.com"}
    assert b["Subject"] == "Grüße ✓ 1"
    assert b["CustomID"] == mid
    assert "héllo text" in b["TextPart"]
    assert "<p>héllo</p>" in b["HTMLPart"]
    assert "InlinedAttachments" not in b
    assert len(b["Attachments"]) == 1
    a = b["Attachments"][0]
    assert a["Filename"] == "data.bin"
    assert a["ContentType"] == "application/octet-stream"
    assert base64.b64decode(a["Base64Content"]) == att
    hdrs = {k.lower(): v for k, v in b["Headers"].items()}
    assert hdrs["x-campaign"] == "c1"
    assert mid in hdrs["message-id"], b["Headers"]
    assert "to" not in hdrs and "subject" not in hdrs, hdrs


def test_partial_answer_delivered(env):
    """Mailjet lists each recipient it took; one left out is not sent to
    again (the others would get a duplicate): delivered, counted."""
    c, fake = env
    fake.omit = {"cc2@example.net"}
    try:
        mid = c.submit(h.message(10, cc=["cc2@example.net"]))
        m = settled(c, mid)
    finally:
        fake.omit = set()
    assert m["status"] == "delivered" and m["provider"] == "mj", m
    assert m["provider_message_id"] == listed_ids(fake.received[-1]["answer"])
    assert "accepted 1 of 2" in (m["attempts"][0]["detail"] or ""), m


def test_no_to_goes_elsewhere(env):
    """A Bcc-only message would need its Bcc recipient named in To: the
    connector refuses it (transient) and b delivers it."""
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
    assert [a["provider"] for a in m["attempts"]] == ["mj"], m
    assert m["attempts"][0]["outcome"] == "permanent", m
    assert "code=mj-0013" in m["attempts"][0]["detail"], m


def test_503_then_b(env):
    c, fake = env
    fake.mode = "503"
    try:
        mid = c.submit(h.message(3))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == "mj", m
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
    fake.mode, fake.retry_after = "429", "2"
    try:
        mid = c.submit(h.message(5))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == "mj", m
    assert m["attempts"][0]["outcome"] == "throttled", m
    assert m["attempt_count"] == 1, m
    agent_outcome(c, mid, "throttled")


def test_401_account_until_probe(env):
    c, fake = env
    fake.mode = "401"
    try:
        mid = c.submit(h.message(6))
        m = settled(c, mid)
        assert m["status"] == "delivered" and m["provider"] == "b", m
        assert m["attempts"][0]["outcome"] == "account", m
        assert "code=mj-0001" in m["attempts"][0]["detail"], m
        p = c.wait_state("mj", "down", timeout=h.scaled(5))
        assert p["reason"].startswith("account: "), p
        n = fake.probes
        # A probe refused with the keys: still down.
        h.wait_for(lambda: fake.probes >= n + 1, h.scaled(6),
                   "a refused probe")
        assert c.provider("mj")["state"] == "down"
    finally:
        fake.mode = "ok"
    n = fake.probes
    c.wait_state("mj", "up", timeout=h.scaled(10))
    assert fake.probes > n


def test_unauthorized_sender_account(env):
    c, fake = env
    fake.mode = "sender"
    try:
        mid = c.submit(h.message(9))
        m = settled(c, mid)
    finally:
        fake.mode = "ok"
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["outcome"] == "account", m
    assert "code=send-0008" in m["attempts"][0]["detail"], m
    c.wait_state("mj", "up", timeout=h.scaled(10))


@pytest.mark.parametrize("status,body,outcome,code", [
    (200, {"Messages": [{"Status": "error", "Errors": []}]}, "transient",
     "-"),
    (413, {"ErrorIdentifier": "x", "ErrorCode": "mj-0007",
           "StatusCode": 413, "ErrorMessage": "Request too large"},
     "permanent", "mj-0007"),
    (403, {"ErrorIdentifier": "x", "ErrorCode": "mj-0015",
           "StatusCode": 403, "ErrorMessage": "Forbidden"},
     "account", "mj-0015"),
    (500, {"ErrorIdentifier": "x", "StatusCode": 500,
           "ErrorMessage": "Internal error"}, "transient", "-"),
])
def test_other_rows(env, status, body, outcome, code):
    """The table's other rows, answered as such by the stand-in."""
    c, fake = env
    fake.answer = (status, body)
    try:
        mid = c.submit(h.message(11))
        m = settled(c, mid)
    finally:
        fake.answer = None
    assert m["attempts"][0]["provider"] == "mj", m
    assert m["attempts"][0]["outcome"] == outcome, m
    assert "code=%s:" % code in m["attempts"][0]["detail"], m
    if outcome == "permanent":
        assert m["status"] == "failed" and len(m["attempts"]) == 1, m
    else:
        assert m["status"] == "delivered" and m["provider"] == "b", m


def test_over_50_recipients_elsewhere(env):
    """More than Mailjet's 50 recipients: refused by the connector
    (transient), b delivers it, nothing reached the stand-in."""
    c, fake = env
    n = len(fake.received)
    mid = c.submit(h.message(
        13, to=["r%d@example.net" % i for i in range(51)]))
    m = settled(c, mid)
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == "mj", m
    assert len(fake.received) == n


def test_keys_never_shown(env):
    c, fake = env
    assert fake.requests >= 8
    outputs = [c.get(p).body for p in
               ("/v1/providers", "/v1/stats", "/v1/messages?limit=100")]
    r = subprocess.run([h.BIN, "check-config", "-c", c.config_path],
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r
    outputs += [r.stdout, r.stderr]
    with open(c.config_path, "rb") as f:
        outputs.append(f.read())
    for name in os.listdir(c.dir):
        if name.endswith(".log"):
            with open(os.path.join(c.dir, name), "rb") as f:
                outputs.append(f.read())
    for out in outputs:
        for s in PLANTED:
            assert s not in out
