"""A third agent joins mid-stream with a name only its own configuration
file knows: it registers on the fly, comes up and takes a share."""

import shivneri_harness as h


def test_third_agent_joins(make_cluster):
    c = make_cluster(providers=("a", "b"), max_in_flight=8)
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")
    assert "c" not in c.providers_map()

    burst = h.Burst(c, 60, threads=2).start()
    h.wait_for(lambda: burst.count() >= 10, 20, "10 submissions")
    cfg = c.write_agent_config("agent-c.ini", extra_providers={"c": None})
    c.start_agent("c", config=cfg)
    p = c.provider("c")
    assert p["state"] == "up" and p["type"] == "maildir", p
    ids1 = burst.join()
    assert not burst.errors, burst.errors[:3]

    ids2 = c.submit_many(30, threads=1, start=1000)
    c.wait_delivered(ids1 + ids2, timeout=30)
    h.check_delivery(c, ids1 + ids2, ["a", "b", "c"])
    where = h.check_delivery(c, ids2, ["a", "b", "c"])
    counts = {k: len(where.get(k, ())) for k in ("a", "b", "c")}
    # Round robin over three: about ten each.
    assert counts["c"] >= 5, counts
    assert counts["a"] >= 5 and counts["b"] >= 5, counts
    assert c.provider("c")["delivered"] >= counts["c"]
