"""Out of descriptors, the HTTP listener pauses (issue 6, item 2, HTTP).

The server's descriptor limit is cut to 64 (soft and hard, so its raise of
the soft limit to the hard one at start cannot undo it) and clients hold
connections until accept(2) fails.  The server must not spin (a few
percent of a core at most over two seconds), must say so in a bounded
number of log lines, and must serve again once the clients leave; also
when a peer frees a descriptor and takes it again at every retry.
"""

import os
import resource
import socket
import time

import shivneri_harness as h

LIMIT = 64


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based) of the whole line.
    return (int(fields[11]) + int(fields[12])) / \
        float(os.sysconf("SC_CLK_TCK"))


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def test_out_of_fds_pauses_and_recovers(make_cluster):
    # The held connections live well within the default head deadline.
    c = make_cluster()
    c.start_server()
    pid = c.server.pid
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (LIMIT, LIMIT))
    held = []
    try:
        for _ in range(LIMIT + 20):
            held.append(socket.create_connection(("127.0.0.1", c.http_port),
                                                 timeout=h.scaled(5)))
        h.wait_for(lambda: nfds(pid) >= LIMIT, 5,
                   "the server at its descriptor limit")
        # Let a failed accept happen and settle, then measure.
        time.sleep(0.3)
        t0, c0 = time.monotonic(), cpu_seconds(pid)
        time.sleep(2)
        share = (cpu_seconds(pid) - c0) / (time.monotonic() - t0)
        assert share < 0.10, "server used %.0f%% of a core" % (share * 100)
        assert c.server.alive()
    finally:
        for s in held:
            s.close()
    h.wait_for(lambda: c.get("/healthz", timeout=2).status == 200, 10,
               "served again once the clients left")
    log = open(c.server.log_path).read()
    lines = [ln for ln in log.splitlines() if "accept" in ln]
    assert 1 <= len(lines) <= 4, lines[:10]
    assert "accepting again" in log


def test_descriptor_churn_logs_a_bounded_number_of_lines(make_cluster):
    """At its descriptor limit, a peer that frees a connection and takes
    another in turn ends the accept pause and starts the next at every
    retry: the pauses are logged once per 10 s, not twice a retry (about
    20 lines a second before), and the server serves again after."""
    c = make_cluster()
    c.start_server()
    lines = h.descriptor_churn(c.server.pid, c.http_port, LIMIT,
                               c.server.log_path, " http - accept")
    assert len(lines) <= 4, lines[:6]
    h.wait_for(lambda: c.get("/healthz", timeout=2).status == 200, 10,
               "served again once the clients left")
