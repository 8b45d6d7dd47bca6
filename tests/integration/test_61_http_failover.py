"""Failover between two real HTTP connectors under streams of messages.

One server, scheduler round_robin, two providers of different types, each
with its agent against its stand-in: sg (sendgrid, tests/fakes/
fake_sendgrid.py) and mg (mailgun, tests/fakes/fake_mailgun.py).  While
messages stream in through POST /v1/messages, sg's stand-in is made to
fail in one way at a time and comes back:

- 503 while its agent lives: every message is delivered (counted by id
  through GET /v1/messages/ID), those that tried sg have a transient (or,
  once the breaker opened on the ones in flight, lost) attempt there and
  were delivered by mg; sg's agent stays linked (sg never goes down for a
  missing heartbeat or a dropped link); back to ok, sg is up with its
  breaker closed again and takes its share;
- a 429 storm: sg goes paused (GET /v1/providers: paused, paused_until);
  with max_attempts = 1 none fails and each is delivered by mg with
  attempt_count 1 (a throttled try that counted would show 2, over the
  budget; the dispatcher checks the budget only after a failure, so the
  count is what shows it); after the pause sg takes its share again;
- a 401 while a stream flows: sg goes down ("account: ..."), its probe
  (GET /v3/scopes) is refused while the key is, every message sent
  meanwhile is mg's, and once the probe passes sg shares again.

In every case each message reached exactly one stand-in, the one its
record names (by our id in its Message-ID: SendGrid's JSON `headers`,
Mailgun's MIME): nothing lost, nothing delivered twice.  Timers are
small and scaled with the harness's TIME_SCALE; every wait has a deadline
(harness wait_for) and every loop a bound.
"""

import email.parser
import os
import re
import sys
import threading
import time

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_mailgun  # noqa: E402
import fake_sendgrid  # noqa: E402

SG_KEY = "SG.failover-61-sendgrid-key"
MG_KEY = "mgkey-failover-61-mailgun-key"
DOMAIN = "mg.example.org"
STREAM_MAX = 600  # a stream's bound on submissions, whatever happens


@pytest.fixture
def fakes():
    sg = fake_sendgrid.FakeSendGrid(SG_KEY).start()
    mg = fake_mailgun.FakeMailgun(MG_KEY, DOMAIN).start()
    try:
        yield sg, mg
    finally:
        sg.stop()
        mg.stop()


def start_cluster(make_cluster, sg, mg, max_attempts=3):
    """Server and both agents started, both providers up."""
    c = make_cluster(providers=("sg", "mg"))
    keys = {}
    for name, key in (("sg", SG_KEY), ("mg", MG_KEY)):
        keys[name] = os.path.join(c.dir, name + ".key")
        c.write_secret(keys[name], key)
    server = c.server_section()
    server.update(scheduler="round_robin", max_attempts=max_attempts,
                  heartbeat_interval_ms=int(h.scaled(100)),
                  heartbeat_timeout_ms=int(h.scaled(500)),
                  breaker_cooldown_ms=int(h.scaled(300)),
                  retry_base_ms=50, retry_max_ms=int(h.scaled(500)))
    common = {"spawn": "no", "max_in_flight": 8, "probe_interval_s": 1,
              "connect_timeout_ms": 2000,
              "request_timeout_ms": int(h.scaled(2000))}
    provs = {"sg": dict(common, type="sendgrid", base_url=sg.base_url,
                        api_key_file=keys["sg"]),
             "mg": dict(common, type="mailgun", base_url=mg.base_url,
                        api_key_file=keys["mg"], domain=DOMAIN)}
    with open(c.config_path, "w") as f:
        f.write(c.render(server, provs))
    c.start_server()
    c.start_agent("sg")
    c.start_agent("mg")
    return c


def _our_id(message_id):
    """ID of "<ID@host>"."""
    m = re.match(r"\s*<([^@>]+)@", message_id or "")
    return m.group(1) if m else None


def arrivals(sg, mg):
    """{our id: [stand-ins that received it, one entry per arrival]}."""
    seen = {}
    with sg.lock:
        sg_recs = list(sg.received)
    with mg.lock:
        mg_recs = list(mg.received)
    for rec in sg_recs:
        hdrs = {k.lower(): v for k, v in
                (rec["body"].get("headers") or {}).items()}
        seen.setdefault(_our_id(hdrs.get("message-id")), []).append("sg")
    parser = email.parser.BytesHeaderParser()
    for rec in mg_recs:
        mid = _our_id(parser.parsebytes(rec["message"])["Message-ID"])
        seen.setdefault(mid, []).append("mg")
    return seen


def delivered(c, ids, timeout=20):
    """{id: message} once every one of ids is delivered (none failed)."""
    c.wait_delivered(ids, timeout=timeout)
    return {mid: c.msg(mid) for mid in ids}


def shares(msgs):
    """{provider: how many of msgs it delivered}."""
    out = {}
    for m in msgs.values():
        out[m["provider"]] = out.get(m["provider"], 0) + 1
    return out


def assert_once(sg, mg, msgs):
    """Each message arrived at exactly one stand-in, the one its record
    names, and the stand-ins received nothing else."""
    seen = arrivals(sg, mg)
    for mid, m in msgs.items():
        assert seen.get(mid) == [m["provider"]], (mid, seen.get(mid), m)
    assert set(seen) <= set(msgs), set(seen) - set(msgs)


def tried_at(m, name):
    return [a for a in m["attempts"] if a["provider"] == name]


def sg_log_since(c, offset):
    """sg's registry transitions (from, to, reason) and unlinks logged by
    the server after byte offset."""
    with open(c.server.log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    states = re.findall(r'state provider=sg from=(\w+) to=(\w+) '
                        r'reason="([^"]*)"', text)
    unlinks = re.findall(r"unlinked provider=sg\b.*", text)
    return states, unlinks


class Stream:
    """One thread submitting paced messages until stop() (at most
    STREAM_MAX); `acked` holds (monotonic time, id) of each 202."""

    def __init__(self, c, start, pace):
        self.c, self.next, self.pace = c, start, pace
        self.acked = []
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        for i in range(self.next, self.next + STREAM_MAX):
            if self.stopping.is_set():
                return
            try:
                mid = self.c.submit(h.message(i))
            except Exception as e:  # noqa: BLE001 - the test reports it
                self.errors.append(e)
                return
            with self.lock:
                self.acked.append((time.monotonic(), mid))
            self.stopping.wait(self.pace)  # pacing, not a wait for a state

    def start(self):
        self.thread.start()
        return self

    def ids(self, since=0.0, until=float("inf")):
        with self.lock:
            return [mid for t, mid in self.acked if since <= t < until]

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=h.scaled(30))
        assert not self.thread.is_alive(), "stream thread stuck"
        assert not self.errors, self.errors[:3]
        return self.ids()


def received_grows(fake, n, more):
    h.wait_for(lambda: len(fake.received) >= n + more, 10,
               "%d more messages at the stand-in" % more)


def test_503_traffic_moves_nothing_lost_then_shared(make_cluster, fakes):
    sg, mg = fakes
    c = start_cluster(make_cluster, sg, mg)
    b1 = delivered(c, c.submit_many(40, start=0))
    s1 = shares(b1)
    assert s1.get("sg", 0) > 0 and s1.get("mg", 0) > 0, s1

    mark = os.path.getsize(c.server.log_path)
    sg.mode = "503"
    try:
        b2 = delivered(c, c.submit_many(60, start=100))
        during = c.provider("sg")
    finally:
        sg.mode = "ok"
    assert shares(b2) == {"mg": 60}, shares(b2)
    outcomes = {}
    for m in b2.values():
        for a in tried_at(m, "sg"):
            outcomes[a["outcome"]] = outcomes.get(a["outcome"], 0) + 1
            # transient: its 503; lost: in flight when the breaker took
            # sg down (its 503 came after and was ignored).
            assert a["outcome"] in ("transient", "lost"), m
        assert m["attempt_count"] <= 3, m
    assert outcomes.get("transient", 0) > 0, outcomes
    states, unlinks = sg_log_since(c, mark)
    print("503 phase: sg attempts %r, transitions %r, provider %r"
          % (outcomes, states, during))
    # The agent lived and stayed linked: sg never went down for a missing
    # heartbeat or a dropped link, only (maybe) for its breaker.
    assert not unlinks, unlinks
    for _, to, why in states:
        assert to != "down" or why == "circuit breaker open", states
    assert c.agents["sg"].alive()
    assert outcomes.get("lost", 0) == 0 or \
        ("up", "down", "circuit breaker open") in states, (outcomes, states)

    # Recovered: up again with its breaker not open, then closed by the
    # first delivery, and shared again.
    h.wait_for(lambda: (lambda p: p["state"] == "up" and
                        p["breaker"] != "open")(c.provider("sg")),
               10, "sg up, breaker not open")
    b3 = delivered(c, c.submit_many(40, start=200))
    s3 = shares(b3)
    assert s3.get("sg", 0) > 0 and s3.get("mg", 0) > 0, s3
    assert c.provider("sg")["breaker"] == "closed"
    assert_once(sg, mg, {**b1, **b2, **b3})


def test_429_storm_pauses_nothing_failed(make_cluster, fakes):
    sg, mg = fakes
    # One attempt each: a counted throttled try would be over budget.
    c = start_cluster(make_cluster, sg, mg, max_attempts=1)
    b1 = delivered(c, c.submit_many(20, start=0))
    assert set(shares(b1)) == {"sg", "mg"}, shares(b1)

    sg.retry_after = "2"  # its X-RateLimit-Reset: now + 2 s
    sg.mode = "429"
    try:
        burst = h.Burst(c, n=60, start=100).start()
        p = c.wait_state("sg", "paused", timeout=5)
        assert p["paused_until"] and p["reason"].startswith("throttled"), p
        b2 = delivered(c, burst.join())
    finally:
        sg.mode = "ok"
    assert shares(b2) == {"mg": 60}, shares(b2)
    throttled = 0
    for m in b2.values():
        assert [a["outcome"] for a in tried_at(m, "sg")] in \
            ([], ["throttled"]), m
        throttled += len(tried_at(m, "sg"))
        assert m["attempt_count"] == 1, m
    assert throttled > 0
    # A 429 storm is the pause's business, not the breaker's.
    assert c.provider("sg")["breaker"] == "closed"

    c.wait_state("sg", "up", timeout=10)
    b3 = delivered(c, c.submit_many(30, start=200))
    assert set(shares(b3)) == {"sg", "mg"}, shares(b3)
    assert_once(sg, mg, {**b1, **b2, **b3})


def test_401_down_until_probe_passes(make_cluster, fakes):
    sg, mg = fakes
    c = start_cluster(make_cluster, sg, mg)
    stream = Stream(c, 0, pace=h.scaled(0.02)).start()
    try:
        received_grows(sg, 0, 3)  # shared while the key is good

        sg.mode = "401"
        p = c.wait_state("sg", "down", timeout=5)
        assert p["reason"].startswith("account: "), p
        down_at = time.monotonic()
        probes = sg.probes
        h.wait_for(lambda: sg.probes > probes, 5,
                   "a probe refused while the key is")
        assert c.provider("sg")["state"] == "down"
        n_sg = len(sg.received)
        sg.mode = "ok"
        ok_at = time.monotonic()
        probes = sg.probes
        c.wait_state("sg", "up", timeout=10)
        assert sg.probes > probes  # back by a probe that passed
        received_grows(sg, n_sg, 3)  # shared again
    finally:
        sg.mode = "ok"
        ids = stream.stop()
    msgs = delivered(c, ids, timeout=30)
    while_down = stream.ids(down_at, ok_at)
    assert len(while_down) >= 5, len(while_down)
    assert all(msgs[mid]["provider"] == "mg" for mid in while_down)
    accounts = 0
    for m in msgs.values():
        for a in tried_at(m, "sg"):
            if a["outcome"] != "delivered":
                assert a["outcome"] == "account", m
                assert m["provider"] == "mg", m
                accounts += 1
    assert accounts > 0
    assert set(shares(msgs)) == {"sg", "mg"}
    assert_once(sg, mg, msgs)
