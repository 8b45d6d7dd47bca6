"""Durable before sent: the server is killed with -9 while messages flow
to the agents, several times.  Every acknowledged message is delivered,
and a message delivered twice always has a "lost" attempt on record: a
JOB never leaves before its `sending` state is durable, so after a crash
the store knows which messages may already be at a provider."""

import time

import shivneri_harness as h

N = 1500
KILLS = 3


def test_kill9_server_while_delivering(make_cluster):
    c = make_cluster(providers=("a", "b"), max_in_flight=16)
    c.start_server()
    # Queued first, so that the kills land in the middle of the flow.
    ids = c.submit_many(N, threads=6)
    c.start_agent("a")
    c.start_agent("b")
    at_kill = []

    for k in range(KILLS):
        # Kill while deliveries are under way: some messages delivered,
        # some not, some in flight.
        target = (k + 1) * N // (KILLS + 2)

        def delivering():
            s = c.stats()
            return s["delivered"] >= target
        h.wait_for(delivering, 60, "%d delivered before kill %d" %
                   (target, k + 1), interval=0.005)
        c.server.kill9()
        c.server.wait_exit(5)
        at_kill.append(c.all_maildir_ids(["a", "b"]))
        c.start_server()
        # The agents reconnect by themselves.
        c.wait_state("a", "up", timeout=15)
        c.wait_state("b", "up", timeout=15)

    c.wait_delivered(ids, timeout=90)
    where = h.check_delivery(c, ids, ["a", "b"])
    dups = 0
    found = c.all_maildir_ids(["a", "b"])
    for mid in ids:
        dups += sum(found[n].get(mid, 0) for n in ("a", "b")) > 1
    print("files at each kill %r; delivered by a %d, b %d, duplicates %d "
          "(each with a lost attempt)" %
          ([sum(len(v) for v in f.values()) for f in at_kill],
           len(where.get("a", ())), len(where.get("b", ())), dups))
    # The kills must have cut the flow, or this proved nothing.
    assert any(sum(len(v) for v in f.values()) < N for f in at_kill)
    s = c.stats()
    assert s["failed"] == 0, s
