"""A spawned agent with a configuration error is held, not restarted for
ever (issue 5, defect 9).

The provider's maildir path lies under a regular file: serve starts (it does
not open maildirs), but the agent cannot, and exits 2.  The supervisor must
not restart it every few hundred milliseconds: the agent's error appears
once, the provider stays down (with the reason, where the HTTP API shows
it), and the agent runs again once its configuration file changes.
"""

import os
import signal
import time

import shivneri_harness as h

MARK = "cannot create maildir"


def marks(c):
    """How many times agent a printed its error (passed on by serve)."""
    with open(c.server.log_path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    return sum(1 for line in text.splitlines()
               if line.startswith("shivneri agent:") and MARK in line)


def test_config_error_is_held_until_the_file_changes(make_cluster):
    c = make_cluster(providers=("a", "b"), spawn=True)
    blocker = os.path.join(c.dir, "plain-file")
    with open(blocker, "w") as f:
        f.write("x\n")
    text = c.render(c.server_section(),
                    {"a": dict(c.provider_section("a"),
                               path=os.path.join(blocker, "md")),
                     "b": c.provider_section("b")})
    with open(c.config_path, "w") as f:
        f.write(text)
    c.start_server()
    c.wait_state("b", "up")
    h.wait_for(lambda: marks(c) >= 1, 10, "agent a's configuration error")

    # Held: a restart every 100-800 ms would repeat the error.
    deadline = time.monotonic() + h.scaled(2.0)
    while time.monotonic() < deadline:
        assert marks(c) == 1, h.tail(c.server.log_path)
        time.sleep(0.05)
    p = c.provider("a")
    assert p is not None and p["state"] != "up", p
    if "reason" in p:
        assert "exited 2" in p["reason"] and MARK in p["reason"], p

    # SIGHUP retries it once: same file, same error, held again.
    c.server.signal(signal.SIGHUP)
    h.wait_for(lambda: marks(c) >= 2, 10, "agent a retried on SIGHUP")

    # The file is fixed: the supervisor notices and a comes up.
    c.write_config()
    c.wait_state("a", "up", timeout=15)
    mids = c.submit_many(6)
    c.wait_delivered(mids)
    assert marks(c) == 2, h.tail(c.server.log_path)
