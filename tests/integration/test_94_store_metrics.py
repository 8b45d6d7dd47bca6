"""The store's commit metrics on /metrics (issue 10): the commit latency
histogram (shivneri_store_commit_seconds) and the batch size histogram
(shivneri_store_commit_batch_size, operations per commit) parse strictly
(test_90's parser: cumulative buckets ending in +Inf equal to _count),
count the same commits, and move as mail flows: every acknowledged message
was carried by a commit, and concurrent submissions share commits."""

import test_90_metrics as t90

import shivneri_harness as h

SECONDS = "shivneri_store_commit_seconds"
BATCH = "shivneri_store_commit_batch_size"


def commits(c):
    """(types, {name: value}) of the two families' unlabelled samples and
    their buckets keyed by (name, le)."""
    types, samples = t90.scrape(c)
    out = {}
    for name, labels, v in samples:
        if not name.startswith((SECONDS, BATCH)):
            continue
        key = (name, labels["le"]) if "le" in labels else name
        assert key not in out, key
        assert set(labels) <= {"le"}, (name, labels)
        out[key] = v
    return types, out


def check_shape(types, s):
    assert types[SECONDS] == "histogram"
    assert types[BATCH] == "histogram"
    les = sorted(le for n, le in (k for k in s if isinstance(k, tuple))
                 if n == SECONDS + "_bucket")
    # Sub-millisecond buckets: a commit on a good disk is a fraction of a
    # millisecond, which the 5 ms floor of the send histograms would hide.
    assert "0.0001" in les and "0.001" in les and "+Inf" in les, les
    assert (BATCH + "_bucket", "1") in s and (BATCH + "_bucket", "1024") in s
    # Both histograms count each commit once.
    assert s[SECONDS + "_count"] == s[BATCH + "_count"]
    assert s[(SECONDS + "_bucket", "+Inf")] == s[SECONDS + "_count"]
    assert s[(BATCH + "_bucket", "+Inf")] == s[BATCH + "_count"]
    assert s[SECONDS + "_sum"] >= 0
    # A commit carries at least one operation.
    assert s[BATCH + "_sum"] >= s[BATCH + "_count"]
    assert s[(BATCH + "_bucket", "1024")] == s[BATCH + "_count"]


def test_commits_counted_as_mail_flows(make_cluster):
    c = make_cluster(providers=("a",))
    c.start_server()
    types, s0 = commits(c)
    check_shape(types, s0)

    # One at a time: each 202 waits for its own commit.
    n = 5
    for i in range(n):
        c.submit(h.message(i))
    types, s1 = commits(c)
    check_shape(types, s1)
    assert s1[SECONDS + "_count"] - s0[SECONDS + "_count"] >= n
    assert s1[BATCH + "_sum"] - s0[BATCH + "_sum"] >= n
    assert s1[SECONDS + "_sum"] > s0[SECONDS + "_sum"]

    # Concurrent clients: operations queued while a commit is on its way
    # to disk share the next one, so some commit carries more than one.
    # Group commit is a matter of timing, so a few bounded bursts.
    shared = False
    prev = s1
    for burst in range(4):
        c.submit_many(48, threads=12, start=100 + 100 * burst)
        types, s2 = commits(c)
        check_shape(types, s2)
        dcount = s2[BATCH + "_count"] - prev[BATCH + "_count"]
        dops = s2[BATCH + "_sum"] - prev[BATCH + "_sum"]
        assert dops >= 48 and dcount >= 1, (dops, dcount)
        alone = (s2[(BATCH + "_bucket", "1")] -
                 prev[(BATCH + "_bucket", "1")])
        prev = s2
        if alone < dcount:
            shared = True
            break
    assert shared, "no commit carried two operations in 4 bursts"
