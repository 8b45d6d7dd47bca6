"""SIGTERM during a burst of submissions: the server drains and exits 0,
and every id it answered 202 is in the store after a restart."""

import signal
import time

import shivneri_harness as h


def test_sigterm_mid_burst(make_cluster):
    c = make_cluster(providers=("a",))
    c.start_server()
    burst = h.Burst(c, None, threads=4).start()
    h.wait_for(lambda: burst.count() >= 60 or burst.errors, 60,
               "60 acknowledged submissions")
    assert not burst.errors, burst.errors[:3]
    t_term = time.monotonic()
    c.server.signal(signal.SIGTERM)
    rc = c.server.wait_exit(5)
    burst.stop()
    ids = burst.join()
    assert rc == 0, rc
    early = [e for t, e in burst.errors if t < t_term]
    assert not early, early[:3]
    assert len(ids) >= 60

    c.start_server()
    for mid in ids:
        m = c.msg(mid)
        assert m["id"] == mid and m["status"] == "queued", m
    c.start_agent("a")
    c.wait_delivered(ids, timeout=60)
    h.check_delivery(c, ids, ["a"])
    # And a clean stop with nothing going on also exits 0.
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(5) == 0
