"""Priority tiers and overflow (docs/internals/scheduler.md): under the
priority scheduler a burst waits for a full primary instead of spilling
onto the backup, unless the primary says overflow = yes; a backup takes
over when the primary is down."""

import shivneri_harness as h


def tiered(make_cluster, overflow):
    c = make_cluster(providers=("a", "b"),
                     server_extra={"scheduler": "priority"})

    def write_config():
        # a: the primary tier, room for one message at a time; b: backup.
        a = c.provider_section("a")
        a.update(priority=1, max_in_flight=1)
        if overflow:
            a["overflow"] = "yes"
        b = c.provider_section("b")
        b.update(priority=2, max_in_flight=8)
        with open(c.config_path, "w") as f:
            f.write(c.render(c.server_section(), {"a": a, "b": b}))
    c.write_config = write_config
    c.write_config()
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")
    return c


def test_burst_waits_for_full_primary(make_cluster):
    c = tiered(make_cluster, overflow=False)
    ids = c.submit_many(40)
    c.wait_delivered(ids, timeout=60)
    where = h.check_delivery(c, ids, ["a", "b"])
    assert len(where.get("a", ())) == 40, where
    assert c.provider("b")["delivered"] == 0

    # The primary's agent goes: the backup takes the next ones.
    c.agents["a"].kill9()
    c.wait_state("a", "down", timeout=5)
    more = c.submit_many(5, start=40)
    c.wait_delivered(more, timeout=30)
    where = h.check_delivery(c, more, ["a", "b"])
    assert len(where.get("b", ())) == 5, where


def test_burst_overflows_when_allowed(make_cluster):
    c = tiered(make_cluster, overflow=True)
    ids = c.submit_many(200, threads=8)
    c.wait_delivered(ids, timeout=60)
    where = h.check_delivery(c, ids, ["a", "b"])
    # a holds one at a time; a burst of 200 cannot all wait for it.
    assert len(where.get("b", ())) > 0, where
    assert len(where.get("a", ())) > 0, where
