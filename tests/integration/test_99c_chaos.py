"""The chaos run (tests/integration/chaos.py), briefly: a fixed seed and
fifteen seconds of storm, then recovery and the four invariants (no
accepted message lost, every duplicate on record, nothing refused sent,
one message per idempotency key).

CHAOS_SEED and CHAOS_SECONDS override both for a longer manual run
(docs/internals/testing.md).
"""

import chaos


def test_chaos(make_cluster):
    seed = chaos.seed_from_env(20261130)
    seconds = chaos.seconds_from_env(15)
    run = chaos.Run(make_cluster, seed, seconds)
    try:
        summary = run.go()
    finally:
        run.http.stop()
        run.smtp.stop()
    v = summary["verdicts"]
    # The storm must have been a storm: messages through, faults done.
    assert v.get("accepted", 0) >= 20, summary
    assert summary["faults"] >= 5, summary
