"""The headline: an agent killed with -9 in the middle of a stream.  Its
provider goes down at once, every message still reaches delivered (the
ones it held are re-queued as "lost"), a message lands twice only when it
has a lost attempt, and the provider gets its share back when its agent
returns."""

import time

import shivneri_harness as h


def test_kill9_agent_mid_stream(make_cluster):
    c = make_cluster(providers=("a", "b"), max_in_flight=4)
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")

    burst = h.Burst(c, 100, threads=4).start()

    def a_busy():
        if burst.count() < 30:
            return False
        p = c.provider("a")
        return p["in_flight"] > 0 or p["delivered"] > 0
    h.wait_for(a_busy, 20, "30 submissions and agent a taking messages")
    # Kill while the stream is still flowing.
    acked_at_kill = burst.count()
    c.agents["a"].kill9()
    t_kill = time.monotonic()
    pa = c.wait_state("a", "down", timeout=1.0)
    down_after = time.monotonic() - t_kill
    assert down_after < h.scaled(1.0), down_after
    # The operator sees why: the link dropped.
    assert pa["reason"], pa

    ids = burst.join()
    assert not burst.errors, burst.errors[:3]
    assert len(ids) == 100
    assert acked_at_kill < 100, "the burst ended before the kill"
    c.wait_delivered(ids, timeout=30)
    where = h.check_delivery(c, ids, ["a", "b"])
    assert len(where.get("b", ())) > 0
    # Nothing can be delivered by a dead agent after the kill.
    assert c.provider("a")["in_flight"] == 0
    nlost = 0
    for mid in ids:
        m = c.msg(mid)
        nlost += any(a["outcome"] == "lost" for a in m["attempts"])
        for att in m["attempts"]:
            assert att["outcome"] in ("delivered", "lost"), m
            assert att["provider"] in ("a", "b"), m
        lost = [a for a in m["attempts"] if a["outcome"] == "lost"]
        for a in lost:
            assert a["provider"] == "a", m
        if lost:
            assert m["provider"] == "b", m

    print("acked at kill %d, delivered by a %d, b %d, lost %d" %
          (acked_at_kill, len(where.get("a", ())), len(where.get("b", ())),
           nlost))

    # A returns: up within 2 s of its start.
    t0 = time.monotonic()
    c.start_agent("a", wait=False)
    pa = c.wait_state("a", "up", timeout=2.0)
    up_after = time.monotonic() - t0
    assert up_after < h.scaled(2.0), up_after
    assert pa["reason"] is None, pa

    ids2 = c.submit_many(40, threads=2, start=1000)
    c.wait_delivered(ids2, timeout=30)
    where2 = h.check_delivery(c, ids2, ["a", "b"])
    na = len(where2.get("a", ()))
    # Round robin: about half, with room for the scheduler skipping a
    # provider that is at max_in_flight.
    print("after the restart: a %d, b %d; a up after %.3fs" %
          (na, len(where2.get("b", ())), up_after))
    assert 8 <= na <= 32, {k: len(v) for k, v in where2.items()}
    assert c.server.alive()
