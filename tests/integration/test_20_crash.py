"""Durable before acknowledged: the server is killed with -9 in the
middle of a burst of submissions; every id that was answered 202 survives
the restart and is delivered."""

import time

import shivneri_harness as h

N = 300


def test_kill9_server_mid_burst(make_cluster):
    c = make_cluster(providers=("a", "b"))
    c.start_server()
    # No agent yet: everything stays queued in the store.
    burst = h.Burst(c, None, threads=6).start()
    h.wait_for(lambda: burst.count() >= N or burst.errors, 90,
               "%d acknowledged submissions" % N)
    assert not burst.errors, burst.errors[:3]
    # Kill while the threads are still submitting, so some requests are
    # cut off half-way: those were never acknowledged and prove nothing.
    t_kill = time.monotonic()
    c.server.kill9()
    burst.stop()
    ids = burst.join()
    early = [e for t, e in burst.errors if t < t_kill]
    assert not early, early[:3]
    assert len(ids) >= N
    assert len(set(ids)) == len(ids)

    c.start_server()
    for mid in ids:
        m = c.msg(mid)
        assert m["status"] == "queued", m
    c.start_agent("a")
    c.start_agent("b")
    c.wait_delivered(ids, timeout=90)
    h.check_delivery(c, ids, ["a", "b"])
    s = c.stats()
    assert s["delivered"] >= len(ids), s
    assert s["failed"] == 0, s
