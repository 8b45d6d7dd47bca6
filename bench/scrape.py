#!/usr/bin/python3
"""What a flood of /metrics scrapes costs the server (the route takes no key).

shivneri serve with no providers; --connections keep-alive connections each
ask GET /metrics again as soon as the last answer is in, for --seconds.
Printed: scrapes a second and the server's CPU (user + system, from
/proc/PID/stat) per scrape.  The client is Python, so the rate is bounded
by it; the CPU per scrape is the figure to compare.
"""

import argparse
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

REQ = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answer_len(buf):
    """The length of the first whole answer in buf, or 0."""
    k = buf.find(b"\r\n\r\n")
    if k < 0:
        return 0
    for line in buf[:k].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = k + 4 + int(line.split(b":", 1)[1])
            return n if len(buf) >= n else 0
    sys.exit("bench: an answer without Content-Length")


def scraper(port, stop, counts, i):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    buf = b""
    try:
        while time.monotonic() < stop:
            s.sendall(REQ)
            while (n := answer_len(buf)) == 0:
                d = s.recv(65536)
                if not d:
                    return
                buf += d
            if not buf.startswith(b"HTTP/1.1 200 "):
                sys.exit("bench: %r" % buf[:80])
            buf = buf[n:]
            counts[i] += 1
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_args(ap)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=5)
    args = ap.parse_args()

    b = benchlib.Bench(args, "scrape")
    conf, http_port, _ = b.write_config(providers=())
    srv = b.start_server(conf, http_port)
    counts = [0] * args.connections
    stop = time.monotonic() + args.seconds
    c0, t0 = cpu_s(srv.pid), time.monotonic()
    threads = [threading.Thread(target=scraper,
                                args=(http_port, stop, counts, i))
               for i in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=args.seconds + 30)
    c1, t1 = cpu_s(srv.pid), time.monotonic()
    b.stop(srv)
    n = sum(counts)
    if n == 0:
        sys.exit("bench: no scrape answered")
    rows = [("scrapes", "%d in %.1f s: %.0f/s" % (n, t1 - t0, n / (t1 - t0))),
            ("server CPU per scrape", "%.1f us" % ((c1 - c0) * 1e6 / n))]
    benchlib.emit(args, "scrape", rows, {
        "scrapes": n, "rate": n / (t1 - t0),
        "cpu_us_per_scrape": (c1 - c0) * 1e6 / n})


if __name__ == "__main__":
    main()
