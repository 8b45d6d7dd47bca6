#!/usr/bin/python3
"""Server memory with a deep queue: 1,000,000 messages, no provider up.

shivneri serve with no providers, so nothing leaves the queue; loadgen
submits --messages (default 1,000,000) over 64 connections; then VmRSS and
VmHWM are read from /proc/PID/status (after --settle seconds, so that the
figure is the resting size, and HWM the peak during intake).  Bodies are
small (--size 256 by default, not 2 KB) to keep the disk use and the run
time down: the target is about what the server keeps in memory per queued
message, not about the bodies, which live in SQLite.

Target: RSS < 64 MB.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_args(ap)
    ap.add_argument("--messages", type=int, default=1000000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--settle", type=float, default=3)
    ap.add_argument("--max-seconds", type=float, default=900,
                    help="cap on the submission")
    args = ap.parse_args()

    b = benchlib.Bench(args, "memory")
    conf, http_port, _ = b.write_config(providers=())
    srv = b.start_server(conf, http_port)
    idle = benchlib.proc_status(srv.pid)
    lg = b.loadgen(http_port, ["--requests", args.messages, "--connections",
                               args.connections, "--threads", args.threads,
                               "--size", args.size, "--duration",
                               args.max_seconds], args.max_seconds + 60)
    time.sleep(args.settle)
    mem = benchlib.proc_status(srv.pid)
    h = benchlib.Http(http_port, timeout=30)
    try:
        queued = benchlib.stats(h).get("queued")
    except Exception as e:  # the count is a cross-check only
        queued = "? (%s)" % e
    h.close()
    disk = benchlib.dir_bytes(b.path("data"))
    b.stop(srv, grace=30)

    rss_mb = mem.get("VmRSS", 0) / 1024
    ok = lg["ok"] >= args.messages and rss_mb < 64
    rows = [
        ("submitted", "%d accepted of %d in %.1f s (%.0f/s), failed %d %s" %
         (lg["ok"], args.messages, lg["elapsed_s"], lg["rps"],
          lg["errors"], lg["by_error"])),
        ("queued (API)", str(queued)),
        ("RSS idle", "%.1f MB" % (idle.get("VmRSS", 0) / 1024)),
        ("RSS with the queue", "%.1f MB" % rss_mb),
        ("HWM (peak)", "%.1f MB" % (mem.get("VmHWM", 0) / 1024)),
        ("data dir on disk", "%.1f MB" % (disk / 1e6)),
        ("target RSS < 64 MB, all queued", benchlib.verdict(ok)),
    ]
    benchlib.emit(args, "memory: %d queued messages, %d-byte text, no "
                  "providers" % (args.messages, args.size), rows,
                  {"bench": "memory", "messages": args.messages,
                   "accepted": lg["ok"], "queued": queued,
                   "rss_idle_kib": idle.get("VmRSS"),
                   "rss_kib": mem.get("VmRSS"), "hwm_kib": mem.get("VmHWM"),
                   "disk_bytes": disk, "loadgen": lg, "pass": ok})
    return 0


if __name__ == "__main__":
    sys.exit(main())
