"""Supervised agents (spawn = yes): the server starts them, restarts one
killed with -9 while mail keeps flowing, and takes them down with it on
SIGTERM."""

import os
import signal

import shivneri_harness as h


def test_spawned_agents_supervised(make_cluster):
    c = make_cluster(providers=("a", "b"), spawn=True)
    c.start_server()
    pa = c.wait_state("a", "up", timeout=10)
    pb = c.wait_state("b", "up", timeout=10)
    for p in (pa, pb):
        assert isinstance(p["pid"], int) and p["pid"] > 0, p
        assert h.pid_alive(p["pid"]), p
        assert p["remote"] is False, p
    old = pa["pid"]

    burst = h.Burst(c, 40, threads=2).start()
    h.wait_for(lambda: burst.count() >= 5, 20, "5 submissions")
    os.kill(old, signal.SIGKILL)

    def restarted():
        p = c.provider("a")
        if p["state"] == "up" and p["pid"] not in (None, old) and \
                h.pid_alive(p["pid"]):
            return p
        return None
    pa2 = h.wait_for(restarted, 10, "agent a restarted with a new pid")
    ids = burst.join()
    assert not burst.errors, burst.errors[:3]
    ids += c.submit_many(10, threads=1, start=1000)
    c.wait_delivered(ids, timeout=30)
    h.check_delivery(c, ids, ["a", "b"])

    pids = [pa2["pid"], c.provider("b")["pid"]]
    c.server.signal(signal.SIGTERM)
    rc = c.server.wait_exit(5)
    assert rc == 0, rc
    h.wait_for(lambda: not any(h.pid_alive(p) for p in pids), 3,
               "spawned agents %r to be gone" % pids)
