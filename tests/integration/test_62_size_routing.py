"""A message too large for one provider goes to one that can take it.

Providers have different size limits (PROVIDERS.md); a provider's
refusal of a message for its size is about the provider, not the
message.  Before 2026-11-30 every connector mapped a 413 (and smtp a 552
at MAIL or after the data) to `permanent`, so a message over the small
provider's limit failed for good although a larger one was up.

- Two SendGrid stand-ins (tests/fakes/fake_sendgrid.py), "small" that
  answers 413 above 20,000 bytes of request and "big", under the priority
  scheduler with small first: a 40 KB message is refused by small
  (attempt `too_large`, free) and delivered by big; small's limit shown
  by GET /v1/providers drops below that size, learned for an hour
  (`max_message_bytes_learned_until`, null before), so the next one goes
  straight to big; a small message still goes to small.  The learned
  limit is told by a `provider.limit_learned` event and shown by /metrics
  and `shivneri providers` too.  (That the hour
  ends is tests/unit/test_dispatcher_size.c's: the server's hour is
  fixed.)
- The same two with `max_message_bytes` in their sections (announced by
  their agents): a 40 KB message is never offered to small; one over
  both limits fails at once with "too large for every provider: N bytes,
  largest limit M" and no attempt; with big's agent not up yet, a 40 KB
  message waits parked (no backoff) and goes the moment big is up.
- An smtp provider whose stand-in (tests/fakes/smtp_fake.py) announces
  SIZE 20000 in EHLO: the agent answers too_large before MAIL (nothing
  reaches the stand-in) and the maildir provider behind it delivers; a
  552 after the data is too_large too.

Every wait has a deadline (harness wait_for).
"""

import datetime
import os
import subprocess
import sys
import time

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_sendgrid  # noqa: E402
import smtp_fake  # noqa: E402
from test_91_events import Sse  # noqa: E402

KEY = "SG.size-routing-62-key"
SMALL_REQUEST = 20000  # bytes of request the small stand-in takes
BIG_TEXT = 40000  # a message body over it
HUGE_TEXT = 100000  # over both configured limits below


@pytest.fixture
def fakes():
    small = fake_sendgrid.FakeSendGrid(KEY, limit=SMALL_REQUEST).start()
    big = fake_sendgrid.FakeSendGrid(KEY).start()
    try:
        yield small, big
    finally:
        small.stop()
        big.stop()


def sendgrid_cluster(make_cluster, small, big, small_extra=None,
                     big_extra=None, server_extra=None, start_big=True):
    """Server and both agents up (big's unless start_big is false);
    scheduler priority, small first."""
    c = make_cluster(providers=("small", "big"))
    key = os.path.join(c.dir, "sg.key")
    c.write_secret(key, KEY)
    server = c.server_section()
    server.update(scheduler="priority", max_attempts=3, **(server_extra or {}))
    common = {"type": "sendgrid", "spawn": "no", "max_in_flight": 4,
              "api_key_file": key, "connect_timeout_ms": 2000,
              "request_timeout_ms": int(h.scaled(5000))}
    provs = {"small": dict(common, base_url=small.base_url, priority=1,
                           **(small_extra or {})),
             "big": dict(common, base_url=big.base_url, priority=2,
                         **(big_extra or {}))}
    with open(c.config_path, "w") as f:
        f.write(c.render(server, provs))
    c.start_server()
    c.start_agent("small")
    c.wait_state("small", "up")
    if start_big:
        c.start_agent("big")
        c.wait_state("big", "up")
    return c


def big_message(n, size=BIG_TEXT):
    return h.message(n, text="x" * size + "\n")


def outcomes(m):
    return [(a["provider"], a["outcome"]) for a in m["attempts"]]


def learned_shown_everywhere(c, stream, p):
    """A learned limit, as GET /v1/providers has it (p), is told by a
    provider.limit_learned event and shown by /metrics and
    `shivneri providers` (docs/http-api.md)."""
    evs = stream.wait(lambda evs: [e for e in evs if e["event"] ==
                                   "provider.limit_learned"],
                      "a provider.limit_learned event")
    ev = [e["data"] for e in evs if e["event"] == "provider.limit_learned"]
    assert len(ev) == 1, ev
    assert ev[0]["provider"] == "small" and ev[0]["state"] == "up", ev
    assert ev[0]["max_message_bytes"] == p["max_message_bytes"], (ev, p)
    assert ev[0]["max_message_bytes_learned_until"] == \
        p["max_message_bytes_learned_until"], (ev, p)
    until = datetime.datetime.strptime(
        p["max_message_bytes_learned_until"], "%Y-%m-%dT%H:%M:%S.%fZ")
    until = until.replace(tzinfo=datetime.timezone.utc).timestamp()
    r = c.get("/metrics")
    assert r.status == 200, r
    lines = r.body.decode().split("\n")
    assert 'shivneri_provider_max_message_bytes{provider="small"} %d' % \
        p["max_message_bytes"] in lines, lines
    assert 'shivneri_provider_max_message_bytes{provider="big"} %d' % \
        (25 * 1024 * 1024) in lines, lines
    got = [ln for ln in lines if ln.startswith(
        'shivneri_provider_limit_learned_until_timestamp_seconds'
        '{provider="small"} ')]
    assert len(got) == 1 and 0 <= float(got[0].split()[1]) - until < 1, got
    assert 'shivneri_provider_limit_learned_until_timestamp_seconds' \
        '{provider="big"} 0' in lines, lines
    out = subprocess.run([h.BIN, "providers", "--url",
                          "http://127.0.0.1:%d" % c.http_port],
                         capture_output=True, text=True,
                         timeout=h.scaled(30))
    assert out.returncode == 0, out
    head = out.stdout.splitlines()[0]
    row = [ln for ln in out.stdout.splitlines() if ln.startswith("small ")]
    at = head.index(" LOWERED_UNTIL ") + 1
    assert row[0][at:].split()[0] == p["max_message_bytes_learned_until"], \
        out.stdout


def test_413_goes_to_the_larger_provider(make_cluster, fakes):
    small, big = fakes
    c = sendgrid_cluster(make_cluster, small, big)
    assert c.provider("small")["max_message_bytes_learned_until"] is None
    stream = Sse(c.http_port)
    try:
        mid = c.submit(big_message(1))
        c.wait_delivered([mid], timeout=h.scaled(15))
        learned_shown_everywhere(c, stream, c.provider("small"))
    finally:
        stream.close()
    m = c.msg(mid)
    assert m["provider"] == "big", m
    assert outcomes(m) == [("small", "too_large"), ("big", "delivered")], m
    assert "413" in m["attempts"][0]["detail"], m
    assert small.too_large == 1 and not small.received
    # small works (it answered): up, breaker closed; its limit now says
    # it takes less than that message, until its agent registers again.
    p = c.provider("small")
    assert p["state"] == "up" and p["breaker"] == "closed", p
    server_max = c.provider("big")["max_message_bytes"]
    assert server_max == 25 * 1024 * 1024  # the server's, by default
    # Just under that message's size (its text plus its headers).
    assert BIG_TEXT < p["max_message_bytes"] < BIG_TEXT + 4096, p
    # Learned, for an hour from the refusal (not until a restart).
    until = datetime.datetime.strptime(
        p["max_message_bytes_learned_until"], "%Y-%m-%dT%H:%M:%S.%fZ")
    left = (until.replace(tzinfo=datetime.timezone.utc).timestamp() -
            time.time())
    assert 3600 - h.scaled(60) < left <= 3600, p
    assert c.provider("big")["max_message_bytes_learned_until"] is None

    mid2 = c.submit(big_message(2))
    c.wait_delivered([mid2], timeout=h.scaled(15))
    assert outcomes(c.msg(mid2)) == [("big", "delivered")]
    assert small.too_large == 1

    mid3 = c.submit(h.message(3))
    c.wait_delivered([mid3], timeout=h.scaled(15))
    assert outcomes(c.msg(mid3)) == [("small", "delivered")]


def test_configured_limits_and_too_large_for_all(make_cluster, fakes):
    small, big = fakes
    # Only the file's providers (max_dynamic_providers = 0): no start's
    # grace for agents that register on the fly (the next test's).
    c = sendgrid_cluster(make_cluster, small, big,
                         small_extra={"max_message_bytes": 30000},
                         big_extra={"max_message_bytes": 60000},
                         server_extra={"max_dynamic_providers": 0})
    assert c.provider("small")["max_message_bytes"] == 30000
    assert c.provider("big")["max_message_bytes"] == 60000

    mid = c.submit(big_message(1))
    c.wait_delivered([mid], timeout=h.scaled(15))
    assert outcomes(c.msg(mid)) == [("big", "delivered")]
    assert small.requests == 0 or not small.received
    assert small.too_large == 0

    mid2 = c.submit(big_message(2, HUGE_TEXT))

    def failed():
        m = c.msg(mid2)
        return m if m["status"] == "failed" else None
    # At once, not at message_ttl_s: well within a few seconds.
    m = h.wait_for(failed, h.scaled(5), "the huge message to fail")
    assert m["attempts"] == [], m
    assert m["error"].startswith("too large for every provider: "), m
    assert m["error"].endswith(" bytes, largest limit 60000"), m
    size = int(m["error"].split(": ", 1)[1].split(" ", 1)[0])
    assert size > HUGE_TEXT, m
    assert not big.received[1:] and small.too_large == 0


def parked(c):
    name = 'shivneri_queue_messages{where="parked"} '
    lines = c.get("/metrics").body.decode().split("\n")
    got = [ln for ln in lines if ln.startswith(name)]
    assert len(got) == 1, lines
    return int(got[0].split()[1])


def test_waits_for_the_provider_that_fits(make_cluster, fakes):
    """Only big can carry it and big's agent is not up yet, while small
    is: the message is parked (counted by /metrics, no attempt, no
    backoff), and the moment big's agent registers it is delivered, not
    after a backoff (a minute here).  Until 2026-12-01 it backed off round
    after round, and waited out its backoff after big came up."""
    small, big = fakes
    c = sendgrid_cluster(make_cluster, small, big,
                         small_extra={"max_message_bytes": 30000},
                         big_extra={"max_message_bytes": 60000},
                         server_extra={"retry_base_ms": 60000,
                                       "retry_max_ms": 60000},
                         start_big=False)
    mid = c.submit(big_message(1))
    h.wait_for(lambda: parked(c) == 1, h.scaled(5), "the message parked")
    m = c.msg(mid)
    assert m["status"] == "queued" and m["attempts"] == [], m
    c.start_agent("big")
    c.wait_state("big", "up")
    c.wait_delivered([mid], timeout=h.scaled(10))
    assert outcomes(c.msg(mid)) == [("big", "delivered")]
    assert parked(c) == 0
    assert small.requests == 0 or not small.received


def test_dynamic_provider_after_restart(make_cluster):
    """"dyn" is a provider its agent registers on the fly, the only one
    whose limit takes a 40 KB message ("small", in the file, takes 30,000
    bytes).  The message is queued while dyn's agent is away, and the
    server restarts: it knows dyn again only once dyn's agent is back.
    Until 2026-12-01 the message failed "too large for every provider" as
    soon as the restarted server had small up; now no message is judged
    unfit during the start's grace (30 s, docs/internals/dispatch.md): it
    waits parked and dyn delivers it when its agent registers."""
    c = make_cluster(providers=("small",))
    c.sections["small"] = dict(c.provider_section("small", spawn=False),
                               max_message_bytes=30000)
    c.write_config()
    c.start_server()
    c.start_agent("small")
    dyn_cfg = c.write_agent_config("agent-dyn.ini",
                                   extra_providers={"dyn": None})
    c.start_agent("dyn", config=dyn_cfg)
    c.agents["dyn"].kill9()
    c.wait_state("dyn", "down")

    mid = c.submit(big_message(1))
    h.wait_for(lambda: parked(c) == 1, h.scaled(5), "the message parked")
    c.server.kill9()
    c.start_server()
    c.wait_state("small", "up")

    def settled():
        m = c.msg(mid)
        return m if m["status"] == "failed" or parked(c) == 1 else None
    m = h.wait_for(settled, h.scaled(10), "the message offered again")
    assert m["status"] == "queued" and m["attempts"] == [], m
    c.start_agent("dyn", config=dyn_cfg)
    c.wait_delivered([mid], timeout=h.scaled(10))
    assert outcomes(c.msg(mid)) == [("dyn", "delivered")]
    assert parked(c) == 0


def test_smtp_size_and_552(make_cluster):
    fake = smtp_fake.SmtpFake(h.free_port(), size_limit=20000).start()
    try:
        c = make_cluster(providers=("s", "m"))
        c.server_extra.update(scheduler="priority")
        c.provider_extra.update(priority=2)
        c.smtp_provider("s", fake.port, priority=1)
        c.start_server()
        c.start_agent("s")
        c.start_agent("m")
        c.wait_state("s", "up")
        c.wait_state("m", "up")

        mid = c.submit(big_message(1))
        c.wait_delivered([mid], timeout=h.scaled(15))
        m = c.msg(mid)
        assert outcomes(m) == [("s", "too_large"), ("m", "delivered")], m
        assert "SIZE" in m["attempts"][0]["detail"], m
        # Checked before MAIL: nothing of it reached the smarthost.
        assert fake.mails == 0 and not fake.messages()

        # 552 after the data (a limit the EHLO did not say).
        fake.data_reply = "552 5.3.4 Message too big for this system"
        mid2 = c.submit(big_message(2, 10000))
        c.wait_delivered([mid2], timeout=h.scaled(15))
        m2 = c.msg(mid2)
        assert outcomes(m2) == [("s", "too_large"), ("m", "delivered")], m2
        assert "552" in m2["attempts"][0]["detail"], m2
    finally:
        fake.stop()
