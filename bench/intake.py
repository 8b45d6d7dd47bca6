#!/usr/bin/python3
"""Durable HTTP intake, judged against the disk in the same run.

1. fsync_ceiling in the data dir's filesystem: write(2 KB)+fdatasync ops/s,
   the ceiling of an intake that flushes once per message;
2. sqlite_commit there: one-row commits/s and rows/s in batches of 100
   (WAL, synchronous=FULL);
3. shivneri serve with NO providers (so only intake and the store work),
   a short warm-up, then loadgen: --connections (64) closed-loop keep-alive
   connections POSTing 2 KB messages for --seconds.

Targets (SPEC issue): >= 20,000 acknowledged messages/s, p99 < 10 ms.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_args(ap)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--ceiling-seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="loadgen threads (2 lets it use a second core)")
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args()

    b = benchlib.Bench(args, "intake")
    data = b.path("data")
    os.makedirs(data)
    mnt, fstype, dev = benchlib.filesystem(data)
    if fstype in ("tmpfs", "ramfs"):
        print("warning: %s is on %s: fsync costs nothing there" %
              (data, fstype), file=sys.stderr)

    t = int(args.ceiling_seconds * 3 + 30)
    fs = b.run_tool([b.tool("fsync_ceiling"), "--dir", data, "--seconds",
                     str(args.ceiling_seconds), "--size", str(args.size)], t)
    sq = b.run_tool([b.tool("sqlite_commit"), "--dir", data, "--seconds",
                     str(args.ceiling_seconds), "--size", str(args.size)],
                    t * 2)

    conf, http_port, _ = b.write_config(providers=())
    srv = b.start_server(conf, http_port)
    lg_common = ["--connections", args.connections, "--threads",
                 args.threads, "--size", args.size, "--timeout-ms", 10000]
    if args.warmup > 0:
        b.loadgen(http_port, lg_common + ["--duration", args.warmup],
                  args.warmup + 30)
    lg = b.loadgen(http_port, lg_common + ["--duration", args.seconds],
                   args.seconds + 30)
    rss = benchlib.proc_status(srv.pid)
    rc = b.stop(srv)

    rps = lg["rps"]
    ceiling = fs["ops_per_s"]
    ok = rps >= 20000 and lg["p99_us"] < 10000 and lg["errors"] == 0
    rows = [
        ("filesystem", "%s (%s on %s)" % (mnt, fstype, dev)),
        ("fsync ceiling", "%.0f ops/s, p50 %d us, p99 %d us" %
         (ceiling, fs["p50_us"], fs["p99_us"])),
        ("sqlite one-row commits", "%.0f commits/s, p50 %d us" %
         (sq["single_commits_per_s"], sq["single_p50_us"])),
        ("sqlite batches of %d" % sq["batch"], "%.0f rows/s" %
         sq["batch_rows_per_s"]),
        ("intake", "%.0f msg/s acknowledged (%d ok, %d failed %s) in %.1f s"
         % (rps, lg["ok"], lg["errors"], lg["by_error"], lg["elapsed_s"])),
        ("latency", "p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms" %
         (lg["p50_us"] / 1e3, lg["p90_us"] / 1e3, lg["p99_us"] / 1e3,
          lg["max_us"] / 1e3)),
        ("intake / fsync ceiling", "%.2fx" % (rps / ceiling if ceiling
                                               else 0)),
        ("server RSS after", "%d KiB (HWM %d KiB), exit %s" %
         (rss.get("VmRSS", 0), rss.get("VmHWM", 0), rc)),
        ("target >= 20000/s, p99 < 10 ms", benchlib.verdict(ok)),
    ]
    benchlib.emit(args, "intake: %d connections, %d-byte text, %.0f s" %
                  (args.connections, args.size, args.seconds), rows,
                  {"bench": "intake", "fsync": fs, "sqlite": sq,
                   "loadgen": lg, "ratio": rps / ceiling if ceiling else 0,
                   "filesystem": fstype, "pass": ok})
    return 0


if __name__ == "__main__":
    sys.exit(main())
