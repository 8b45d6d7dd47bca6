#!/usr/bin/python3
"""HTTP connectors: delivered/s through one agent, connections, 503 outage.

For each HTTP provider type (--types), against bench/fake_api (a libevent
stand-in answering that API's success shape at once):

throughput (--rounds times, the median kept): a server with ONE supervised
agent of the type (spawn = yes, max_in_flight as the server's default or
--max-in-flight), up before the clock starts; loadgen submits --messages
over --connections; the clock stops when GET /v1/stats shows every accepted
message delivered (or failed), as e2e.py does.  Delivered/s = delivered /
time to the last delivery.  The stand-in's count of connections that
carried an API request gives connections per 1,000 messages (target: at
most max_in_flight, i.e. kept alive and reused).  CPU time of the agent,
the server, the stand-in and loadgen (/proc and getrusage) per delivered
message says which process bounds the rate.

outage (unless --no-outage): two agents of the type, each with its own
stand-in, scheduler round_robin, breaker_threshold --breaker-threshold (by
default high, so that every message offered to the failing provider pays
the 503 instead of the breaker hiding it).  A paced stream (--outage-rate
for --outage-seconds) first with both healthy (the baseline), then with
the first stand-in answering 503 to everything.  Latency of a message =
its delivered attempt's time minus its created_at (GET /v1/messages/ID:
both stamped by the server, in ms).  The outage's cost is the median (and
p99) of the rerouted messages (a 503 attempt on the first, then delivered
by the second) against the baseline's; target: one round trip.

A type the binary does not know (`shivneri check-config` refuses the
configuration) is skipped with a line saying so.  Everything runs on
127.0.0.1; every wait has a deadline.
"""

import argparse
import calendar
import http.client
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib  # noqa: E402

ALL_TYPES = ("mailgun", "sendgrid", "ses", "postmark", "sparkpost", "resend",
             "brevo", "mailjet")
HZ = os.sysconf("SC_CLK_TCK")


def type_keys(b, ptype, port):
    """The type's keys (SPEC.md), with secret files made in the scratch."""
    def secret(name, value):
        p = b.path("secrets", name)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")
        return p

    keys = {"base_url": "http://127.0.0.1:%d" % port}
    if ptype == "ses":
        keys.update(region="us-east-1", access_key_id="AKIDBENCHEXAMPLE",
                    secret_access_key_file=secret("ses", "bench-secret"))
    elif ptype == "postmark":
        keys["server_token_file"] = secret("postmark", "bench-token")
    else:
        keys["api_key_file"] = secret(ptype, "bench-key")
    if ptype == "mailgun":
        keys["domain"] = "bench.example.com"
    if ptype == "mailjet":
        keys["secret_key_file"] = secret("mailjet-secret", "bench-secret")
    return keys


def cpu_s(pid):
    """utime + stime of pid (all its threads) in seconds, or None."""
    if not pid:
        return None
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / HZ


def thread_cpu_s(pid):
    """tid -> utime + stime in seconds, for every thread of pid."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / HZ
    return out


def thread_us(pid, before, after, n):
    """The server's CPU per message by thread: loop (the main thread)
    first, then the three busiest others, as a list of (label, us)."""
    if n <= 0:
        return []
    d = {t: after[t] - before.get(t, 0.0) for t in after}
    rows = [("loop", d.pop(pid, 0.0) * 1e6 / n)]
    busy = sorted(d.values(), reverse=True)[:3]
    for i, v in enumerate(busy):
        if v > 0:
            # The busiest is the store's writer (sections 1 and 7).
            rows.append(("other%d" % (i + 1), v * 1e6 / n))
    return rows


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def pct(values, p):
    """The p-th percentile (nearest rank) of values, or None."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


class Run:
    """One server with its stand-ins and agents, in a subfolder."""

    def __init__(self, b, tag):
        self.b = b
        self.tag = tag
        self.procs = []
        os.makedirs(b.path(tag), exist_ok=True)

    def spawn(self, argv, logname):
        p = self.b.spawn(argv, os.path.join(self.tag, logname))
        self.procs.append(p)
        return p

    def start_fake(self, name, fail_status=0):
        port = benchlib.free_port()
        p = self.spawn([self.b.tool("fake_api"), "--port", str(port),
                        "--fail-status", str(fail_status)],
                       "fake-%s.log" % name)
        h = benchlib.Http(port, timeout=2)
        ok = benchlib.wait_for(lambda: p.poll() is None and
                               fake_stats(h) is not None, 10, 0.02)
        if not ok:
            sys.exit("connectors: fake_api on %d did not answer; see %s"
                     % (port, self.b.path(self.tag, "fake-%s.log" % name)))
        return p, port, h

    def config(self, provs, server):
        """Writes TAG/bench.ini; returns (path, http_port)."""
        server = dict(server)
        server.update(data_dir=self.b.path(self.tag, "data"),
                      agent_secret_file=self.b.path(self.tag, "agent.secret"))
        conf, http_port, _ = self.b.write_config(providers=provs,
                                                 server=server)
        mine = self.b.path(self.tag, "bench.ini")
        os.replace(conf, mine)
        return mine, http_port

    def start_server(self, conf, http_port, timeout=20.0):
        p = self.spawn([self.b.args.bin, "serve", "-c", conf], "server.log")
        h = benchlib.Http(http_port, timeout=1.0)

        def healthy():
            if p.poll() is not None:
                sys.exit("connectors: the server exited with %d; see %s" %
                         (p.returncode, self.b.path(self.tag, "server.log")))
            try:
                return h.get("/healthz")[0] == 200
            except (OSError, http.client.HTTPException):
                return False
        ok = benchlib.wait_for(healthy, timeout, 0.05)
        h.close()
        if not ok:
            sys.exit("connectors: no /healthz within %.0f s; see %s" %
                     (timeout, self.b.path(self.tag, "server.log")))
        return p

    def stop(self):
        for p in reversed(self.procs):
            self.b.stop(p)
            if p in self.b.procs:
                self.b.procs.remove(p)
        self.procs = []


def fake_stats(h):
    try:
        status, doc = h.get("/stats")
    except (OSError, http.client.HTTPException):
        return None
    return doc if status == 200 and isinstance(doc, dict) else None


def check_type(b, ptype):
    """None when the binary takes a provider of ptype, else its refusal."""
    run = Run(b, "check-%s" % ptype)
    conf, _ = run.config([dict(name="probe", type=ptype, spawn="yes",
                               **type_keys(b, ptype, 9))], {})
    r = subprocess.run([b.args.bin, "check-config", "-c", conf],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30, check=False)
    if r.returncode == 0:
        return None
    lines = r.stdout.decode(errors="replace").strip().splitlines()
    return lines[0] if lines else "status %d" % r.returncode


def provider(b, name, ptype, port, args):
    p = dict(name=name, type=ptype, spawn="yes", **type_keys(b, ptype, port))
    if args.max_in_flight > 0:
        p["max_in_flight"] = args.max_in_flight
    return p


def throughput(b, ptype, rnd, args):
    """One throughput round of ptype; a dict of figures."""
    run = Run(b, "%s-tput-%d" % (ptype, rnd))
    fake, port, fh = run.start_fake("a")
    name = "%s-a" % ptype
    conf, http_port = run.config([provider(b, name, ptype, port, args)], {})
    srv = run.start_server(conf, http_port)
    h = benchlib.Http(http_port)
    if not benchlib.wait_for(lambda: benchlib.all_up(h, [name]), 20, 0.05):
        sys.exit("connectors: %s was not up within 20 s; see %s" %
                 (name, b.path(run.tag, "server.log")))
    p0 = benchlib.providers(h).get(name, {})
    agent_pid = p0.get("pid")
    s0 = fake_stats(fh)
    cpu0 = (cpu_s(agent_pid), cpu_s(srv.pid), cpu_s(fake.pid),
            children_cpu_s())

    t0 = time.monotonic()
    lg = b.loadgen(http_port, ["--requests", args.messages, "--connections",
                               args.connections, "--size", args.size,
                               "--duration", args.timeout],
                   args.timeout + 30)
    cpu_lg = children_cpu_s() - cpu0[3]
    t_submitted = time.monotonic() - t0
    last = {}

    def all_done():
        s = benchlib.stats(h)
        last.update(s)
        return s.get("delivered", 0) + s.get("failed", 0) >= lg["ok"]

    done = benchlib.wait_for(all_done, args.timeout, 0.01)
    t_all = time.monotonic() - t0
    cpu1 = (cpu_s(agent_pid), cpu_s(srv.pid), cpu_s(fake.pid))
    s1 = fake_stats(fh) or {}
    p1 = benchlib.providers(h).get(name, {})
    h.close()
    fh.close()
    run.stop()

    delivered = last.get("delivered", 0)
    conns = s1.get("api_connections", 0) - (s0 or {}).get(
        "api_connections", 0)
    reqs = sum(s1.get("requests", {}).values()) - sum(
        (s0 or {}).get("requests", {}).values())

    def per_msg_us(i):
        if cpu0[i] is None or cpu1[i] is None or delivered == 0:
            return None
        return (cpu1[i] - cpu0[i]) * 1e6 / delivered

    return {
        "type": ptype, "round": rnd, "messages": args.messages,
        "accepted": lg["ok"], "delivered": delivered,
        "failed": last.get("failed", 0), "complete": bool(done),
        "seconds": t_all, "submit_seconds": t_submitted,
        "submit_rps": lg["rps"],
        "delivered_per_s": delivered / t_all if t_all > 0 else 0,
        "fake_requests": reqs, "fake_api_connections": conns,
        "connections_per_1000": conns * 1000.0 / delivered
        if delivered else None,
        "max_in_flight": p1.get("max_in_flight", args.max_in_flight or None),
        "cpu_us_per_msg": {"agent": per_msg_us(0), "server": per_msg_us(1),
                           "fake_api": per_msg_us(2),
                           "loadgen": cpu_lg * 1e6 / delivered
                           if delivered else None},
    }


def drain(b, ptype, args):
    """Delivery alone: N queued first, then the agent started by hand.

    Intake is over before the agent connects, so the rate is that of the
    server's dispatch and store writes plus the agent, with no loadgen or
    intake on the CPU; the per-thread CPU shows which side bounds it.
    """
    run = Run(b, "%s-drain" % ptype)
    fake, port, fh = run.start_fake("a")
    name = "%s-a" % ptype
    prov = provider(b, name, ptype, port, args)
    prov["spawn"] = "no"
    conf, http_port = run.config([prov], {})
    srv = run.start_server(conf, http_port)
    h = benchlib.Http(http_port)
    lg = b.loadgen(http_port, ["--requests", args.messages, "--connections",
                               args.connections, "--size", args.size,
                               "--duration", args.timeout],
                   args.timeout + 30)
    n = lg["ok"]
    queued = benchlib.wait_for(
        lambda: benchlib.stats(h).get("queued", 0) >= n, 30, 0.05)
    agent = run.spawn([b.args.bin, "agent", "-c", conf, "-p", name],
                      "agent.log")
    if not benchlib.wait_for(lambda: benchlib.all_up(h, [name]), 20, 0.005):
        sys.exit("connectors: %s was not up within 20 s; see %s" %
                 (name, b.path(run.tag, "agent.log")))
    t0 = time.monotonic()
    th0, a0, f0 = thread_cpu_s(srv.pid), cpu_s(agent.pid), cpu_s(fake.pid)
    prof = None
    if args.perf:
        # The agent only, with DWARF call graphs: libcurl, GMime and
        # glib have no frame pointers.
        prof = subprocess.Popen(
            ["perf", "record", "-q", "-F", "499", "--call-graph",
             "dwarf,16384", "-p", str(agent.pid), "-o",
             b.path(run.tag, "perf.data")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = {}

    def all_done():
        s = benchlib.stats(h)
        last.update(s)
        return s.get("delivered", 0) + s.get("failed", 0) >= n

    done = benchlib.wait_for(all_done, args.timeout, 0.01)
    t_all = time.monotonic() - t0
    th1, a1, f1 = thread_cpu_s(srv.pid), cpu_s(agent.pid), cpu_s(fake.pid)
    if prof is not None:
        prof.send_signal(2)
        try:
            prof.wait(timeout=60)
        except subprocess.TimeoutExpired:
            prof.kill()
            prof.wait(timeout=10)
    h.close()
    fh.close()
    run.stop()
    delivered = last.get("delivered", 0)
    res = {"type": ptype, "queued_before": bool(queued), "accepted": n,
           "delivered": delivered, "failed": last.get("failed", 0),
           "complete": bool(done), "seconds": t_all,
           "delivered_per_s": delivered / t_all if t_all > 0 else 0,
           "agent_us": (a1 - a0) * 1e6 / delivered
           if delivered and a0 is not None and a1 is not None else None,
           "fake_api_us": (f1 - f0) * 1e6 / delivered
           if delivered and f0 is not None and f1 is not None else None,
           "server_threads_us": thread_us(srv.pid, th0, th1, delivered)}
    if prof is not None:
        res["perf_report"] = perf_report(b, run.tag)
    return res


def perf_report(b, tag):
    """perf report of the drain into TAG/perf.txt; returns its path."""
    out = b.path(tag, "perf.txt")
    with open(out, "w") as f:
        for extra in (["--children", "--sort", "symbol"],
                      ["--no-children", "--sort", "dso,symbol"]):
            f.flush()
            subprocess.run(["perf", "report", "-i", b.path(tag, "perf.data"),
                            "--stdio", "--percent-limit", "1", "-g", "none"]
                           + extra, stdout=f, stderr=subprocess.DEVNULL,
                           timeout=300, check=False)
    return out


class Stream:
    """A paced stream of messages; remembers every accepted id."""

    def __init__(self, port, rate, seconds, size, threads=2):
        self.port = port
        self.period = threads / float(rate)
        self.seconds = seconds
        self.text = ("outage stream " * (size // 14 + 1))[:size]
        self.ids = []
        self.failed = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.send, daemon=True)
                        for _ in range(threads)]

    def run(self):
        for t in self.threads:
            t.start()
        for t in self.threads:
            t.join(timeout=self.seconds + 60)

    def send(self):
        h = benchlib.Http(self.port, timeout=5)
        end = time.monotonic() + self.seconds
        next_t = time.monotonic()
        n = 0
        while time.monotonic() < end and n < 1000000:
            n += 1
            msg = {"from": "bench@example.com", "to": ["rcpt@example.net"],
                   "subject": "outage %d" % n, "text": self.text}
            try:
                status, doc = h.request("POST", "/v1/messages", msg)
            except (OSError, http.client.HTTPException):
                status, doc = 0, None
            with self.lock:
                if status in (200, 202) and isinstance(doc, dict):
                    self.ids.append(doc.get("id"))
                else:
                    self.failed += 1
            next_t += self.period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_t = time.monotonic()
        h.close()


def rfc3339_ms(s):
    """Epoch milliseconds of the server's YYYY-MM-DDTHH:MM:SS.mmmZ."""
    t = time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S")
    ms = int(s[20:23]) if len(s) >= 23 and s[19] == "." else 0
    return calendar.timegm(t) * 1000 + ms


def latencies(h, ids, failing, timeout):
    """Per delivered message: (total ms, first-leg ms or None, rerouted?,
    has the provider's id?) -- the last proves the connector read the
    stand-in's answer as that API's."""
    out = []
    deadline = time.monotonic() + timeout
    for mid in ids:
        if time.monotonic() > deadline:
            break
        try:
            status, doc = h.get("/v1/messages/%s" % mid)
        except (OSError, http.client.HTTPException):
            continue
        if status != 200 or not isinstance(doc, dict) or \
                doc.get("status") != "delivered" or not doc.get("created_at"):
            continue
        created = rfc3339_ms(doc["created_at"])
        atts = doc.get("attempts") or []
        done = [a for a in atts if a.get("outcome") == "delivered"]
        if not done:
            continue
        bad = [a for a in atts if a.get("provider") == failing and
               a.get("outcome") != "delivered"]
        first = rfc3339_ms(bad[0]["at"]) - created if bad else None
        out.append((rfc3339_ms(done[-1]["at"]) - created, first, bool(bad),
                    bool(doc.get("provider_message_id"))))
    return out


def outage(b, ptype, args):
    """Baseline then 503 outage latencies for two providers of ptype."""
    run = Run(b, "%s-outage" % ptype)
    _, port_a, fha = run.start_fake("a")
    _, port_b, fhb = run.start_fake("b")
    na, nb = "%s-a" % ptype, "%s-b" % ptype
    conf, http_port = run.config(
        [provider(b, na, ptype, port_a, args),
         provider(b, nb, ptype, port_b, args)],
        {"breaker_threshold": args.breaker_threshold})
    run.start_server(conf, http_port)
    h = benchlib.Http(http_port)
    if not benchlib.wait_for(lambda: benchlib.all_up(h, [na, nb]), 20,
                             0.05):
        sys.exit("connectors: %s and %s were not both up within 20 s" %
                 (na, nb))
    # Unmeasured: the agents' first connections and the store's first pages.
    warm = Stream(http_port, args.outage_rate, args.outage_warmup, args.size)
    warm.run()
    phases = {}
    total = len(warm.ids)
    for phase in ("baseline", "outage"):
        if phase == "outage":
            st, doc = fha.request("POST", "/fault?status=503")
            if st != 200:
                sys.exit("connectors: the stand-in refused the fault switch")
        s = Stream(http_port, args.outage_rate, args.outage_seconds,
                   args.size)
        s.run()
        total += len(s.ids)
        settled = benchlib.wait_for(
            lambda: (lambda x: x.get("delivered", 0) + x.get("failed", 0)
                     >= total)(benchlib.stats(h)), args.timeout, 0.02)
        lat = latencies(h, s.ids, na, args.timeout)
        phases[phase] = (s, lat, bool(settled))
    sa, sb = fake_stats(fha) or {}, fake_stats(fhb) or {}
    ps = benchlib.providers(h)
    for x in (h, fha, fhb):
        x.close()
    run.stop()

    base = [x[0] for x in phases["baseline"][1]]
    rer = [(x[0], x[1]) for x in phases["outage"][1] if x[2]]
    direct = [x[0] for x in phases["outage"][1] if not x[2]]
    no_pmid = sum(1 for v in phases.values() for x in v[1] if not x[3])
    res = {"type": ptype, "rate": args.outage_rate,
           "seconds": args.outage_seconds,
           "breaker_threshold": args.breaker_threshold,
           "baseline_n": len(base), "rerouted_n": len(rer),
           "without_provider_id": no_pmid,
           "direct_n": len(direct),
           "sent": {k: len(v[0].ids) for k, v in phases.items()},
           "send_failed": {k: v[0].failed for k, v in phases.items()},
           "not_delivered": {k: len(v[0].ids) - len(v[1])
                             for k, v in phases.items()},
           "settled": all(v[2] for v in phases.values()),
           "fake_a_503": sa.get("status_other"),
           "fake_b_2xx": sb.get("status_2xx"),
           "state_a": ps.get(na, {}).get("state")}
    for key, vals in (("baseline", base), ("rerouted", [t for t, _ in rer]),
                      ("direct", direct),
                      ("first_leg", [f for _, f in rer if f is not None]),
                      ("second_leg", [t - f for t, f in rer
                                      if f is not None])):
        res[key + "_p50_ms"] = statistics.median(vals) if vals else None
        res[key + "_p99_ms"] = pct(vals, 99)
    if res["baseline_p50_ms"] is not None and \
            res["rerouted_p50_ms"] is not None:
        res["added_p50_ms"] = res["rerouted_p50_ms"] - res["baseline_p50_ms"]
        res["added_p99_ms"] = res["rerouted_p99_ms"] - res["baseline_p99_ms"]
    return res


def fmt(v, spec="%.0f"):
    return "-" if v is None else spec % v


def report_type(args, ptype, rounds, dr, out, loads):
    # Other work on the machine takes CPU from every process measured.
    rows = [("load average", "%.2f at the start, %.2f at the end (1 min)" %
             (loads[0][0], loads[1][0]))]
    rates = [r["delivered_per_s"] for r in rounds]
    med = statistics.median(rates)
    rows.append(("delivered/s (median of %d)" % len(rounds),
                 "%s  [%s]  target >= 5,000: %s" %
                 (fmt(med), ", ".join(fmt(x) for x in rates),
                  benchlib.verdict(med >= 5000))))
    conns = [r["connections_per_1000"] for r in rounds
             if r["connections_per_1000"] is not None]
    mif = rounds[0]["max_in_flight"] or 32
    if conns:
        c = statistics.median(conns)
        rows.append(("connections per 1,000 msgs",
                     "%.2f (%s in all; max_in_flight %s): %s" %
                     (c, ", ".join(str(r["fake_api_connections"])
                                   for r in rounds), mif,
                      benchlib.verdict(c <= mif))))
    r0 = rounds[len(rounds) // 2]
    rows.append(("a round", "%d accepted in %.2f s (%.0f/s), %d delivered, "
                 "%d failed, last at %.2f s, stand-in saw %d requests" %
                 (r0["accepted"], r0["submit_seconds"], r0["submit_rps"],
                  r0["delivered"], r0["failed"], r0["seconds"],
                  r0["fake_requests"])))
    cpu = r0["cpu_us_per_msg"]
    rows.append(("CPU us/msg", ", ".join(
        "%s %s" % (k, fmt(cpu[k])) for k in ("agent", "server", "fake_api",
                                            "loadgen"))))
    # What the CPU alone allows: the agent is one thread (one core at
    # most); all four processes share the machine's cores.
    if None not in cpu.values():
        total = sum(cpu.values())
        rows.append(("CPU ceilings", "agent on one core %s/s; all four on "
                     "%d cores %s/s" % (fmt(1e6 / max(cpu["agent"], 1)),
                                        os.cpu_count() or 1,
                                        fmt((os.cpu_count() or 1) * 1e6 /
                                            max(total, 1)))))
    if dr is not None:
        rows.append(("drain (queued first)", "%s delivered/s (%d in %.2f s"
                     "%s); CPU us/msg: agent %s, fake_api %s, server %s" %
                     (fmt(dr["delivered_per_s"]), dr["delivered"],
                      dr["seconds"], "" if dr["complete"] else " INCOMPLETE",
                      fmt(dr["agent_us"]), fmt(dr["fake_api_us"]),
                      " ".join("%s %.0f" % kv
                               for kv in dr["server_threads_us"]))))
        if dr.get("perf_report"):
            rows.append(("perf report", dr["perf_report"]))
    if out is not None:
        rows.append(("outage: baseline", "p50 %s ms, p99 %s ms (n=%d; "
                     "not delivered: %s; delivered without a provider id: "
                     "%d)" %
                     (fmt(out["baseline_p50_ms"], "%.1f"),
                      fmt(out["baseline_p99_ms"], "%.1f"), out["baseline_n"],
                      ", ".join("%s %d" % kv for kv in
                                out["not_delivered"].items()),
                      out["without_provider_id"])))
        rows.append(("outage: rerouted", "p50 %s ms, p99 %s ms (n=%d; %d "
                     "went straight to %s-b)" %
                     (fmt(out["rerouted_p50_ms"], "%.1f"),
                      fmt(out["rerouted_p99_ms"], "%.1f"), out["rerouted_n"],
                      out["direct_n"], ptype)))
        rows.append(("outage: added", "p50 %s ms, p99 %s ms (503 answered "
                     "after p50 %s ms, then delivered p50 %s ms later)" %
                     (fmt(out.get("added_p50_ms"), "%.1f"),
                      fmt(out.get("added_p99_ms"), "%.1f"),
                      fmt(out["first_leg_p50_ms"], "%.1f"),
                      fmt(out["second_leg_p50_ms"], "%.1f"))))
    benchlib.emit(args, "connectors: %s, one agent" % ptype, rows,
                  {"bench": "connectors", "type": ptype,
                   "delivered_per_s": med, "rounds": rounds,
                   "drain": dr, "outage": out,
                   "loadavg": [loads[0][0], loads[1][0]]})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    benchlib.add_common_args(ap)
    ap.add_argument("--types", default=",".join(ALL_TYPES),
                    help="comma-separated HTTP provider types")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=1,
                    help="throughput runs per type (median reported)")
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--max-in-flight", type=int, default=0,
                    help="per provider; 0 keeps the server's default")
    ap.add_argument("--timeout", type=float, default=300,
                    help="cap on each wait for delivery")
    ap.add_argument("--no-drain", action="store_true",
                    help="skip the run that queues first, then delivers")
    ap.add_argument("--perf", action="store_true",
                    help="perf record the agent during the drain (with "
                         "--keep, to read TYPE-drain/perf.txt)")
    ap.add_argument("--no-outage", action="store_true")
    ap.add_argument("--outage-rate", type=float, default=200,
                    help="messages/s of the paced stream")
    ap.add_argument("--outage-seconds", type=float, default=5,
                    help="length of each phase of the stream")
    ap.add_argument("--outage-warmup", type=float, default=1,
                    help="seconds of unmeasured stream before the baseline")
    ap.add_argument("--breaker-threshold", type=int, default=1000000)
    args = ap.parse_args()
    # The processes run in the scratch folder: a relative path would miss.
    args.bin = os.path.abspath(args.bin)
    args.tools = os.path.abspath(args.tools)
    if not (1 <= args.rounds <= 20 and 1 <= args.messages <= 10000000 and
            0 < args.outage_rate <= 5000 and 0 < args.outage_seconds <= 600
            and 0 <= args.outage_warmup <= 60):
        sys.exit("connectors: --rounds 1..20, --messages 1..10^7, "
                 "--outage-rate 0..5000, --outage-seconds 0..600")

    b = benchlib.Bench(args, "connectors")
    b.tool("fake_api")
    b.tool("loadgen")
    status = 0
    for ptype in [t.strip() for t in args.types.split(",") if t.strip()]:
        why = check_type(b, ptype)
        if why is not None:
            print("== connectors: %s skipped: check-config refuses it: %s" %
                  (ptype, why))
            sys.stdout.flush()
            continue
        load0 = os.getloadavg()
        rounds = [throughput(b, ptype, i, args) for i in range(args.rounds)]
        dr = None if args.no_drain else drain(b, ptype, args)
        out = None if args.no_outage else outage(b, ptype, args)
        report_type(args, ptype, rounds, dr, out, (load0, os.getloadavg()))
        if not all(r["complete"] for r in rounds) or \
                (dr is not None and not dr["complete"]) or \
                (out is not None and not out["settled"]):
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
