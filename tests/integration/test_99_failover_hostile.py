"""A hostile review of failover and recovery: providers and agents that
fail the way real ones do, and what a message pays for it.

- An agent that freezes (or whose host vanishes without closing its
  socket) keeps its TCP link for ever.  Its replacement, a new agent of
  the same name, must be able to take the provider over once the old link
  is silent; before, it was refused `name_in_use` for as long as the old
  connection stood, and the provider stayed down.  A live agent that
  beats keeps its name against a second claimant.

Timers are small (heartbeats of 100 ms, a watchdog of 500 ms) and scaled
with the harness's TIME_SCALE; every wait has a deadline (wait_for) and
every loop a bound.
"""

import signal

import shivneri_harness as h

HB = {"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 500}


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
