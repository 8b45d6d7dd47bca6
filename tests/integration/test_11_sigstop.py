"""An agent that freezes (SIGSTOP) keeps its TCP link but stops beating:
the heartbeat watchdog must take its provider down, re-queue what it held
("lost" attempts) to the other provider, and let it back in after
SIGCONT."""

import signal
import time

import shivneri_harness as h

HB_INTERVAL = 0.2
HB_TIMEOUT = 0.8


def test_sigstop_then_sigcont(make_cluster):
    c = make_cluster(providers=("a", "b"), max_in_flight=4)
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")
    a = c.agents["a"]

    a.signal(signal.SIGSTOP)
    t_stop = time.monotonic()
    # Submitted at once, while the server still believes a is up: round
    # robin hands some of them to the frozen agent.
    ids = c.submit_many(20, threads=2)
    c.wait_state("a", "down", timeout=HB_TIMEOUT + HB_INTERVAL + 0.7)
    down_after = time.monotonic() - t_stop
    assert down_after < h.scaled(HB_TIMEOUT + HB_INTERVAL + 0.7), down_after
    assert down_after >= HB_TIMEOUT - HB_INTERVAL - 0.05, \
        "down before the heartbeat timeout could have passed: %.3f" % \
        down_after

    c.wait_delivered(ids, timeout=20)
    lost = []
    for mid in ids:
        m = c.msg(mid)
        assert m["provider"] == "b", m
        if any(x["outcome"] == "lost" and x["provider"] == "a"
               for x in m["attempts"]):
            lost.append(mid)
    assert lost, "no message was in flight at the frozen agent"
    assert len(lost) <= 4, "more in flight than max_in_flight: %d" % \
        len(lost)
    h.check_delivery(c, ids, ["a", "b"])

    a.signal(signal.SIGCONT)
    t_cont = time.monotonic()
    c.wait_state("a", "up", timeout=5)
    assert time.monotonic() - t_cont < h.scaled(5)

    ids2 = c.submit_many(20, threads=1, start=1000)
    c.wait_delivered(ids2, timeout=20)
    where = h.check_delivery(c, ids2, ["a", "b"])
    assert len(where.get("a", ())) >= 4, {k: len(v) for k, v in
                                          where.items()}
    # The frozen agent may have written the jobs it held once it woke:
    # only those (with a lost attempt) may be duplicates.
    h.check_delivery(c, ids, ["a", "b"])
    assert c.server.alive()
