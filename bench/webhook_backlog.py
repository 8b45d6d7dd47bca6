#!/usr/bin/python3
"""Mail with a webhook receiver down and a deep outbox.

Starts a server with webhook_url pointing at a closed loopback port and
webhook_max_outbox = 5,000,000, stops it, puts ROWS rows into its outbox
(not due for 50 minutes, as after a receiver has been down for days), starts
it again, submits 300 messages one after the other and waits for them all
to be delivered.  Prints the submissions' latency (p50, p90, p99) and the
time for the whole run.  Every final outcome makes the sender claim; each
claim used to count the outbox (COUNT(*) reads every row) on the store's
writer thread, between the mail's own writes.

Usage: SHIVNERI_BIN=build/shivneri bench/webhook_backlog.py [ROWS]
"""

import os
import sqlite3
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "integration"))
import shivneri_harness as h  # noqa: E402

BODY = ('{"webhook_id":"01JDQ8Y3M4W2C1V0B9N8M7K6J5",'
        '"type":"message.delivered","at":"2026-11-30T02:10:00.123Z",'
        '"id":"01JDQ8X","provider":"a","attempts":1}')


def main():
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 2000000
    d = tempfile.mkdtemp(prefix="webhook-backlog-")
    c = h.Cluster(d, providers=("a",), server_extra={
        "webhook_url": "http://127.0.0.1:%d/h" % h.free_port(),
        "webhook_retry_max_ms": 3600000, "webhook_max_outbox": 5000000})
    try:
        c.start_server()
        c.start_agent("a")
        c.server.signal(15)
        c.server.wait_exit(20)
        db = sqlite3.connect(os.path.join(c.data_dir, "shivneri.db"))
        now = int(time.time() * 1000)
        with db:
            db.executemany("INSERT INTO outbox (created_ms, next_ms, "
                           "attempts, body) VALUES (?, ?, 3, ?)",
                           ((now, now + 3000000, BODY)
                            for _ in range(rows)))
        db.close()
        c.start_server()
        c.wait_state("a", "up", timeout=20)
        lat, ids = [], []
        t0 = time.monotonic()
        for i in range(300):
            t = time.monotonic()
            ids.append(c.submit(h.message(i)))
            lat.append(time.monotonic() - t)
        c.wait_delivered(ids, timeout=300)
        total = time.monotonic() - t0
        lat.sort()
        print("rows=%d p50=%.1fms p90=%.1fms p99=%.1fms total=%.2fs" %
              (rows, lat[150] * 1000, lat[270] * 1000, lat[297] * 1000,
               total))
    finally:
        c.kill_all()


if __name__ == "__main__":
    main()
