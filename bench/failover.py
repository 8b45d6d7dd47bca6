#!/usr/bin/python3
"""Failover: kill -9 of an agent, and an agent that stops beating.

shivneri serve with two maildir providers run by hand (spawn = no,
`shivneri agent -c CONF -p NAME`), and a steady stream of small messages
(--rate per second, from --senders threads, each message with a unique
subject so that its maildir file can be traced back to its id).

kill -9 (--reps times, alternating the victim): wait until the victim has
messages in flight (GET /v1/providers, polled every millisecond), kill -9
it, then watch the survivor's maildir new/ folder: in file order, look up
each new file's message (GET /v1/messages/ID) until one had an attempt on
the victim.  Failover time = that file's ctime (the rename into new/) minus
the moment of the kill.  File times come from the kernel's coarse clock,
so they are good to a few milliseconds.  A round where no message was in
the victim's hands does not count and is run again (bounded).  The victim
is restarted and back up before the next round.  Target: median < 100 ms.

SIGSTOP (--stop-reps times): SIGSTOP the victim, poll GET /v1/providers
every 5 ms until it is not "up"; SIGCONT; wait for it to be up again (or
restart it).  Target: <= heartbeat_timeout_ms + heartbeat_interval_ms.
"""

import argparse
import os
import signal
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

NAMES = ("sink-a", "sink-b")


class Senders:
    """Threads that POST a steady stream and remember subject -> id."""

    def __init__(self, port, rate, nthreads, size):
        self.port = port
        self.period = nthreads / float(rate)
        self.text = ("failover stream " * (size // 16 + 1))[:size]
        self.tag = "%d" % os.getpid()
        self.ids = {}
        self.lock = threading.Lock()
        self.seq = 0
        self.sent = 0
        self.failed = 0
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True)
                        for _ in range(nthreads)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=10)

    def run(self):
        h = benchlib.Http(self.port, timeout=5)
        next_t = time.monotonic()
        while not self.stopping.is_set():
            with self.lock:
                self.seq += 1
                subject = "failover %s %d" % (self.tag, self.seq)
            msg = {"from": "bench@example.com", "to": ["sink@example.net"],
                   "subject": subject, "text": self.text}
            try:
                status, doc = h.request("POST", "/v1/messages", msg)
            except Exception:
                status, doc = 0, None
            with self.lock:
                if status in (200, 202) and isinstance(doc, dict):
                    self.ids[subject] = doc.get("id")
                    self.sent += 1
                else:
                    self.failed += 1
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
            else:
                next_t = time.monotonic()
        h.close()

    def id_of(self, subject):
        with self.lock:
            return self.ids.get(subject)


def read_subject(path):
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError:
        return None
    head = head.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.splitlines():
        if line[:8].lower() == b"subject:":
            return line[8:].strip().decode("ascii", "replace")
    return None


class Cluster:
    def __init__(self, b, conf, http_port):
        self.b = b
        self.conf = conf
        self.h = benchlib.Http(http_port, timeout=5)
        self.agents = {}

    def start_agent(self, name):
        self.agents[name] = self.b.spawn(
            [self.b.args.bin, "agent", "-c", self.conf, "-p", name],
            "agent-%s.log" % name)

    def state(self, name):
        return benchlib.providers(self.h).get(name, {}).get("state")

    def wait_up(self, names, timeout=20):
        return benchlib.wait_for(lambda: benchlib.all_up(self.h, names),
                                 timeout, 0.02)

    def restart(self, name):
        p = self.agents[name]
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        self.b.procs.remove(p)
        self.start_agent(name)
        if not self.wait_up([name]):
            sys.exit("failover: %s did not come back up within 20 s; see %s"
                     % (name, self.b.path("agent-%s.log" % name)))


def kill_clock_ns():
    """The kill's time on the clock file times are stamped with.

    The kernel stamps ctime from its coarse clock (one tick behind at
    worst); reading that clock too keeps a redelivery one tick after the
    kill from looking as if it came before it.  With fine-grained file
    times the error is one tick the other way.
    """
    try:
        return time.clock_gettime_ns(getattr(time, "CLOCK_REALTIME_COARSE",
                                             5))
    except OSError:
        return time.time_ns()


def kill_round(cl, senders, victim, survivor, newdir):
    """One kill -9 round: (failover ms or None, down ms or None, note)."""
    h = cl.h
    inflight = benchlib.wait_for(
        lambda: (benchlib.providers(h).get(victim, {})
                 .get("in_flight") or 0) > 0, 5, 0.001)
    t_kill_ns = kill_clock_ns()
    t_kill = time.monotonic()
    os.kill(cl.agents[victim].pid, signal.SIGKILL)
    down = benchlib.wait_for(lambda: cl.state(victim) != "up", 5, 0.001)
    down_ms = (time.monotonic() - t_kill) * 1e3 if down else None

    checked = set()
    result = None
    deadline = t_kill + 5
    slack_ns = 10 * 1000 * 1000  # scan a little before, to be safe
    while result is None and time.monotonic() < deadline:
        files = []
        try:
            for e in os.scandir(newdir):
                if e.name in checked:
                    continue
                st = e.stat()
                if st.st_ctime_ns >= t_kill_ns - slack_ns:
                    files.append((st.st_ctime_ns, e.name, e.path))
                else:
                    checked.add(e.name)
        except FileNotFoundError:
            pass
        for ctime_ns, name, path in sorted(files):
            checked.add(name)
            mid = senders.id_of(read_subject(path) or "")
            if mid is None:
                continue
            try:
                status, doc = h.get("/v1/messages/%s" % mid)
            except Exception:
                continue
            if status != 200 or not isinstance(doc, dict):
                continue
            atts = doc.get("attempts") or []
            if any(a.get("provider") == victim for a in atts):
                lost = any(a.get("provider") == victim and
                           a.get("outcome") == "lost" for a in atts)
                result = (max(0, ctime_ns - t_kill_ns) / 1e6,
                          "message %s, attempt on %s: %s" %
                          (mid, victim, "lost" if lost else
                           "not marked lost"))
                break
        if result is None:
            time.sleep(0.01)
    if result is None:
        note = "no message of %s redelivered within 5 s%s" % (
            victim, "" if inflight else " (none seen in flight)")
        return None, down_ms, note
    return result[0], down_ms, result[1]


def stop_round(cl, victim, limit_s):
    pid = cl.agents[victim].pid
    t0 = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    down = benchlib.wait_for(lambda: cl.state(victim) != "up", limit_s,
                             0.005)
    down_ms = (time.monotonic() - t0) * 1e3 if down else None
    os.kill(pid, signal.SIGCONT)
    back = cl.wait_up([victim], limit_s + 5)
    if not back:
        cl.restart(victim)
    return down_ms, "came back" if back else "restarted"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_args(ap)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--stop-reps", type=int, default=3)
    ap.add_argument("--rate", type=float, default=300,
                    help="messages per second in the steady stream")
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--interval-ms", type=int, default=1000,
                    help="heartbeat_interval_ms")
    ap.add_argument("--timeout-ms", type=int, default=3000,
                    help="heartbeat_timeout_ms")
    args = ap.parse_args()

    b = benchlib.Bench(args, "failover")
    provs = [{"name": n, "type": "maildir", "spawn": "no",
              "path": b.path("maildir", n)} for n in NAMES]
    conf, http_port, _ = b.write_config(
        providers=provs,
        server={"heartbeat_interval_ms": args.interval_ms,
                "heartbeat_timeout_ms": args.timeout_ms})
    b.start_server(conf, http_port)
    cl = Cluster(b, conf, http_port)
    for n in NAMES:
        cl.start_agent(n)
    if not cl.wait_up(list(NAMES)):
        sys.exit("failover: agents not up within 20 s; see %s" % b.dir)

    senders = Senders(http_port, args.rate, args.senders, args.size)
    senders.start()
    time.sleep(1)  # let the stream reach its steady state

    rows = []
    kills = []
    rounds = 0
    while len(kills) < args.reps and rounds < args.reps * 3:
        victim = NAMES[rounds % 2]
        survivor = NAMES[1 - rounds % 2]
        rounds += 1
        if not cl.wait_up(list(NAMES)):
            sys.exit("failover: providers not up before round %d" % rounds)
        ms, down_ms, note = kill_round(
            cl, senders, victim, survivor,
            os.path.join(b.path("maildir", survivor), "new"))
        rows.append(("kill -9 #%d %s" % (rounds, victim),
                     "%s (down seen after %s); %s" %
                     ("%.1f ms" % ms if ms is not None else "-",
                      "%.1f ms" % down_ms if down_ms is not None else "-",
                      note)))
        if ms is not None:
            kills.append(ms)
        cl.restart(victim)
        time.sleep(1)

    limit_s = (args.timeout_ms + 3 * args.interval_ms) / 1e3 + 2
    stops = []
    for i in range(args.stop_reps):
        victim = NAMES[i % 2]
        if not cl.wait_up(list(NAMES)):
            sys.exit("failover: providers not up before SIGSTOP %d" % i)
        down_ms, note = stop_round(cl, victim, limit_s)
        rows.append(("SIGSTOP #%d %s" % (i + 1, victim), "%s; %s" % (
            "down after %.0f ms" % down_ms if down_ms is not None
            else "never down", note)))
        if down_ms is not None:
            stops.append(down_ms)
        time.sleep(1)

    senders.stop()
    bound = args.timeout_ms + args.interval_ms
    kill_med = statistics.median(kills) if kills else None
    stop_max = max(stops) if stops else None
    rows += [
        ("stream", "%d messages accepted, %d refused, at ~%.0f/s" %
         (senders.sent, senders.failed, args.rate)),
        ("kill -9 -> redelivered", "median %s over %d rounds (max %s)" % (
            "%.1f ms" % kill_med if kills else "-", len(kills),
            "%.1f ms" % max(kills) if kills else "-")),
        ("target median < 100 ms", benchlib.verdict(
            kills and len(kills) == args.reps and kill_med < 100)),
        ("SIGSTOP -> down", "median %s, max %s over %d rounds" % (
            "%.0f ms" % statistics.median(stops) if stops else "-",
            "%.0f ms" % stop_max if stops else "-", len(stops))),
        ("target <= %d ms (timeout + interval)" % bound, benchlib.verdict(
            len(stops) == args.stop_reps and stops and stop_max <= bound)),
    ]
    benchlib.emit(args, "failover: two maildir agents, heartbeat %d/%d ms" %
                  (args.interval_ms, args.timeout_ms), rows,
                  {"bench": "failover", "kill_ms": kills,
                   "kill_median_ms": kill_med, "stop_down_ms": stops,
                   "stop_bound_ms": bound, "stream_sent": senders.sent})
    return 0


if __name__ == "__main__":
    sys.exit(main())
