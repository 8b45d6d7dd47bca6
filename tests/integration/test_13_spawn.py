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


def test_hangup_reaches_agents_and_ends_none(make_cluster):
    """A SIGHUP to the whole process group (a terminal's hangup, or
    `pkill -HUP shivneri`) reloads the server and reopens every agent's
    log; before, the agents died of it and their sends in flight ended
    ambiguous until the supervisor restarted them."""
    c = make_cluster(providers=("a", "b"), spawn=True)
    c.start_server()
    pids = {n: c.wait_state(n, "up", timeout=10)["pid"] for n in ("a", "b")}

    def log_count(needle):
        with open(c.server.log_path, encoding="utf-8",
                  errors="replace") as f:
            return sum(needle in ln for ln in f)
    os.killpg(c.server.pid, signal.SIGHUP)
    h.wait_for(lambda: log_count("log_reopened") >= 2, 5,
               "both agents to reopen their logs")
    h.wait_for(lambda: log_count("reloaded (SIGHUP)") >= 1, 5,
               "the server to reload")
    for n, pid in pids.items():
        assert h.pid_alive(pid), (n, pid)
        p = c.provider(n)
        assert p["pid"] == pid and p["state"] == "up", p
    assert log_count(" exited provider=") == 0
    ids = c.submit_many(10, threads=1)
    c.wait_delivered(ids, timeout=20)
    h.check_delivery(c, ids, ["a", "b"])
