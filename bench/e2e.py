#!/usr/bin/python3
"""End to end: submit N messages, time until all are delivered.

shivneri serve with two supervised maildir providers (spawn = yes), both
up before the clock starts; loadgen submits --messages N over 64
connections; the clock stops when GET /v1/stats shows delivered == N.
Delivered messages/s = N / (time to the last delivery).  The maildir
folders are counted afterwards as a cross-check of the API's count.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402


def count_files(path):
    n = 0
    for sub in ("new", "cur"):
        try:
            n += sum(1 for e in os.scandir(os.path.join(path, sub))
                     if e.is_file())
        except FileNotFoundError:
            pass
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_args(ap)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--max-in-flight", type=int, default=0,
                    help="per provider; 0 keeps the server's default")
    ap.add_argument("--timeout", type=float, default=300,
                    help="give up waiting for delivery after this long")
    args = ap.parse_args()

    b = benchlib.Bench(args, "e2e")
    provs = []
    for name in ("sink-a", "sink-b"):
        p = {"name": name, "type": "maildir", "spawn": "yes",
             "path": b.path("maildir", name)}
        if args.max_in_flight > 0:
            p["max_in_flight"] = args.max_in_flight
        provs.append(p)
    conf, http_port, _ = b.write_config(providers=provs)
    srv = b.start_server(conf, http_port)
    h = benchlib.Http(http_port)
    if not benchlib.wait_for(lambda: benchlib.all_up(h, ["sink-a",
                                                         "sink-b"]), 20, 0.05):
        sys.exit("e2e: the two providers were not up within 20 s; see %s"
                 % b.path("server.log"))

    t0 = time.monotonic()
    lg = b.loadgen(http_port, ["--requests", args.messages, "--connections",
                               args.connections, "--size", args.size,
                               "--duration", args.timeout],
                   args.timeout + 30)
    t_submitted = time.monotonic() - t0
    accepted = lg["ok"]
    last = {}

    def all_delivered():
        s = benchlib.stats(h)
        last.update(s)
        return s.get("delivered", 0) + s.get("failed", 0) >= accepted

    done = benchlib.wait_for(all_delivered, args.timeout, 0.01)
    t_all = time.monotonic() - t0
    files = {p["name"]: count_files(p["path"]) for p in provs}
    ps = benchlib.providers(h)
    h.close()
    b.stop(srv)

    delivered = last.get("delivered", 0)
    rate = delivered / t_all if t_all > 0 else 0
    rows = [
        ("submitted", "%d accepted of %d in %.2f s (%.0f/s, p99 %.2f ms)" %
         (accepted, args.messages, t_submitted, lg["rps"],
          lg["p99_us"] / 1e3)),
        ("delivered", "%d (failed %d) %s" %
         (delivered, last.get("failed", 0),
          "" if done else "-- TIMED OUT after %.0f s" % args.timeout)),
        ("time to last delivery", "%.2f s" % t_all),
        ("delivered messages/s", "%.0f" % rate),
        ("maildir files", ", ".join("%s %d" % kv for kv in files.items())),
        ("per provider (API)", ", ".join(
            "%s %s" % (n, ps.get(n, {}).get("delivered")) for n in files)),
    ]
    benchlib.emit(args, "e2e: %d messages to two maildir agents" %
                  args.messages, rows,
                  {"bench": "e2e", "messages": args.messages,
                   "accepted": accepted, "delivered": delivered,
                   "failed": last.get("failed", 0), "seconds": t_all,
                   "delivered_per_s": rate, "complete": bool(done),
                   "loadgen": lg, "maildir_files": files})
    return 0 if done else 1


if __name__ == "__main__":
    sys.exit(main())
