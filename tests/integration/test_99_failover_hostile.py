"""A hostile review of failover and recovery: providers and agents that
fail the way real ones do, and what a message pays for it.

- An agent that freezes (or whose host vanishes without closing its
  socket) keeps its TCP link for ever.  Its replacement, a new agent of
  the same name, must be able to take the provider over once the old link
  is silent; before, it was refused `name_in_use` for as long as the old
  connection stood, and the provider stayed down.  A live agent that
  beats keeps its name against a second claimant.
- Every provider down (their APIs answer 503 while their agents beat):
  the breakers are open, and their half-open trials are the only
  attempts made.  A trial that fails is on record but free for the
  message; counted, it failed the few messages left queued with
  "max_attempts reached" after a few cool-downs (with the defaults, two
  providers and three messages left: within about half an hour), long
  before message_ttl_s, though no provider was ever up to take them.
- Priority tiers (overflow = no): a primary that returns ramps its
  share up over slow_start_s; what it cannot take meanwhile goes to the
  backup, which carried everything while it was down.  Before, the
  ramping primary held the backup tier as if it were full, so its return
  cut the relay to the ramp's one message at a time.  Once the ramp is
  over the primary takes everything again.
- An agent that beats `down` while the server's jobs are in its hands:
  they are failed over at once (a `lost` attempt each, "agent reports
  provider down"), not after job_timeout_s.  This held before; it is
  pinned here with the rest.

Timers are small (heartbeats of 100 ms, a watchdog of 500 ms) and scaled
with the harness's TIME_SCALE; every wait has a deadline (wait_for) and
every loop a bound.
"""

import os
import signal
import sys
import time

import pytest

import shivneri_harness as h
from test_32_job_timeout import silent

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_mailgun  # noqa: E402
import fake_sendgrid  # noqa: E402

SG_KEY = "SG.failover-99-sendgrid-key"
MG_KEY = "mgkey-failover-99-mailgun-key"
DOMAIN = "mg.example.org"

HB = {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 500}


@pytest.fixture
def fakes():
    sg = fake_sendgrid.FakeSendGrid(SG_KEY).start()
    mg = fake_mailgun.FakeMailgun(MG_KEY, DOMAIN).start()
    try:
        yield sg, mg
    finally:
        sg.stop()
        mg.stop()


def http_cluster(make_cluster, sg, mg, server=None, provider=None):
    """Server and two HTTP agents (sg: sendgrid, mg: mailgun) against the
    stand-ins, both up."""
    c = make_cluster(providers=("sg", "mg"))
    keys = {}
    for name, key in (("sg", SG_KEY), ("mg", MG_KEY)):
        keys[name] = os.path.join(c.dir, name + ".key")
        c.write_secret(keys[name], key)
    srv = c.server_section()
    srv.update(HB, retry_base_ms=50, retry_max_ms=int(h.scaled(400)))
    srv.update(server or {})
    common = {"spawn": "no", "max_in_flight": 4, "probe_interval_s": 1,
              "connect_timeout_ms": 2000,
              "request_timeout_ms": int(h.scaled(2000))}
    common.update(provider or {})
    provs = {"sg": dict(common, type="sendgrid", base_url=sg.base_url,
                        api_key_file=keys["sg"]),
             "mg": dict(common, type="mailgun", base_url=mg.base_url,
                        api_key_file=keys["mg"], domain=DOMAIN)}
    with open(c.config_path, "w") as f:
        f.write(c.render(srv, provs))
    c.start_server()
    c.start_agent("sg")
    c.start_agent("mg")
    return c


def log_text(proc):
    with open(proc.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def test_silent_link_is_taken_over_by_a_new_agent(make_cluster):
    c = make_cluster(providers=("a", "b"), max_in_flight=4,
                     server_extra=HB)
    c.start_server()
    old = c.start_agent("a")
    c.start_agent("b")
    old_pid = c.provider("a")["pid"]

    old.signal(signal.SIGSTOP)
    try:
        c.wait_state("a", "down", timeout=3)
        # The replacement: same name, same file, a new process.
        new = c.start_agent("a", wait=False, tag="a-new")
        p = c.wait_state("a", "up", timeout=3)
        assert p["pid"] == new.pid != old_pid, p
        assert "replaced provider=a" in log_text(c.server)

        # It takes its share, into a's maildir.
        ids = c.submit_many(20, threads=1)
        c.wait_delivered(ids, timeout=15)
        where = h.check_delivery(c, ids, ["a", "b"])
        assert len(where.get("a", ())) >= 5, where
    finally:
        old.signal(signal.SIGCONT)

    # The old agent wakes to a closed link; while the new one beats, its
    # reconnects are refused and the provider stays the new agent's.
    h.wait_for(lambda: "name_in_use" in log_text(old), 10,
               "the woken agent refused its name")
    p = c.provider("a")
    assert p["state"] == "up" and p["pid"] == new.pid, p
    assert new.alive() and c.server.alive()


def test_live_agent_keeps_its_name(make_cluster):
    c = make_cluster(providers=("a", "b"), server_extra=HB)
    c.start_server()
    first = c.start_agent("a")
    c.start_agent("b")
    pid = c.provider("a")["pid"]

    second = c.start_agent("a", wait=False, tag="a-second")
    h.wait_for(lambda: "name_in_use" in log_text(second), 5,
               "the second claimant refused")
    p = c.provider("a")
    assert p["state"] == "up" and p["pid"] == pid, p
    assert "replaced provider=a" not in log_text(c.server)
    ids = c.submit_many(10, threads=1)
    c.wait_delivered(ids, timeout=10)
    assert first.alive()


def test_breaker_trials_do_not_spend_the_budget(make_cluster, fakes):
    sg, mg = fakes
    c = http_cluster(make_cluster, sg, mg, server={
        "max_attempts": 3, "breaker_threshold": 1,
        "breaker_cooldown_ms": int(h.scaled(100))})
    sg.mode = mg.mode = "503"
    mid = c.submit(h.message(1))
    # Each provider's first failure opens its breaker (two counted
    # attempts); then only trials come, with cool-downs of 100, 200, 400
    # ms ... Three trials each, all failed, while the budget is 3.
    m = h.wait_for(lambda: (lambda m: m if len(m["attempts"]) >= 8 or
                            m["status"] == "failed" else None)(c.msg(mid)),
                   15, "eight attempts on record")
    assert m["status"] in ("queued", "sending"), m
    assert m["attempt_count"] <= 2, m
    assert all(a["outcome"] == "transient" for a in m["attempts"]), m
    assert c.provider("sg")["breaker"] != "closed"

    mg.mode = "ok"  # one provider comes back: the next trial delivers
    c.wait_delivered([mid], timeout=15)
    m = c.msg(mid)
    assert m["provider"] == "mg", m
    assert m["attempts"][-1]["outcome"] == "delivered", m
    assert c.provider("mg")["breaker"] == "closed"


def test_ramping_primary_does_not_hold_the_backup(make_cluster):
    ramp_s = h.scaled(2)
    c = make_cluster(providers=("a", "b"),
                     server_extra=dict(HB, scheduler="priority"))
    a = c.provider_section("a")
    a.update(priority=1, max_in_flight=4, slow_start_s=int(ramp_s))
    b = c.provider_section("b")
    b.update(priority=2, max_in_flight=8)
    with open(c.config_path, "w") as f:
        f.write(c.render(c.server_section(), {"a": a, "b": b}))
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")

    c.agents["a"].kill9()
    c.wait_state("a", "down", timeout=3)
    c.start_agent("a")  # back: its ramp starts at one message
    up_at = time.monotonic()
    ids = c.submit_many(40, threads=4)
    assert time.monotonic() - up_at < int(ramp_s), "burst outlived the ramp"
    c.wait_delivered(ids, timeout=30)
    where = h.check_delivery(c, ids, ["a", "b"])
    assert len(where.get("a", ())) >= 1, where
    assert len(where.get("b", ())) >= 5, where

    # The ramp is over (heartbeats end it): the primary's tier holds
    # everything again, the backup takes nothing.
    h.wait_for(lambda: time.monotonic() > up_at + int(ramp_s) + 0.5,
               int(ramp_s) + 5, "the ramp to run out")
    before = c.provider("b")["delivered"]
    ids = c.submit_many(20, threads=4, start=100)
    c.wait_delivered(ids, timeout=30)
    where = h.check_delivery(c, ids, ["a", "b"])
    assert len(where.get("a", ())) == 20, where
    assert c.provider("b")["delivered"] == before


def test_agent_saying_down_fails_over_at_once(make_cluster):
    c = make_cluster(providers=("a", "b"),
                     server_extra=dict(HB, job_timeout_s=60))
    c.start_server()
    fake = silent(c, "a")  # beats ok, never answers a job
    ids = c.submit_many(4, threads=1)
    h.wait_for(lambda: fake.njobs() >= 4, 5, "4 jobs at the silent agent")
    c.start_agent("b")
    fake.closed.set()  # its own beats stop; the next one is ours
    said = time.monotonic()
    fake.beat("down")
    c.wait_delivered(ids, timeout=5)
    assert time.monotonic() - said < h.scaled(5) < 60
    for mid in ids:
        m = c.msg(mid)
        assert m["provider"] == "b", m
        assert [(a["provider"], a["outcome"], a["detail"])
                for a in m["attempts"]][0] == \
            ("a", "lost", "agent reports provider down"), m
    fake.sock.close()
