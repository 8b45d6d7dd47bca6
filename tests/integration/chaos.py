"""An end-to-end chaos run of the product's promise: no accepted message is
ever lost, and every possible duplicate is on record, while everything
fails at once and at random.

One run (run(cluster_factory, seed, seconds)) does this:

- submitters send a stream of uniquely tagged messages (the tag, CHAOS-
  SEED-N, is the subject and the body) over every intake: POST /v1/messages
  with and without Idempotency-Key (a keyed one is resent with the same
  key and body when it got no answer), SMTP with smtplib and pipelined by
  hand, and the SendGrid and Mailgun drop-ins.  Each submission's result
  is recorded as it came: `accepted` (202, 200, 250, with the id),
  `refused` (any other answer: nothing may be stored), `unsent` (the
  connection failed before the whole request went out: nothing can be
  stored) or `unknown` (the request went out, no answer came: it may or
  may not be stored);
- a fault thread, meanwhile, at random moments (each kind once first, in
  a random order, then by weight, Faults): kill -9s the server and starts
  it again (also while every agent is stopped, while the providers hold
  what they read, in the middle of a graceful stop, half a second into a
  start), stops it with SIGTERM, SIGSTOPs it; kill -9s an agent (the
  server respawns a supervised one, the test the one it runs), SIGSTOPs
  one and SIGCONTs it later; turns the HTTP provider stand-in to a 503, a
  429, a black hole, a cut after the request (FIN or RST), an answer then
  a close, or flapping, and the smarthost stand-in to a 451, a 421, a
  close or a black hole after the dot, a cut in the data, a close after
  the 250, and back; disables and enables a provider through the API;
  SIGHUPs the server;
- then every fault is cleared and the run waits (with a deadline) until
  the queue is empty, and checks the invariants from the stand-ins' own
  record of what they received and from GET /v1/messages/ID (Run.check):
    a. every accepted submission is delivered, once (one `delivered`
       attempt), by the provider it names, which holds a copy (no fault
       here makes a failure legitimate: max_attempts and the TTL are far
       beyond the run);
    b. each copy a provider holds is an attempt there on record: the one
       delivered, or one whose outcome is `ambiguous` (the provider may
       have it) or `lost` (a crash or link drop while it was out,
       docs/internals/dispatch.md);
    c. no stand-in received a refused or unsent submission;
    d. every answer to one Idempotency-Key names the same message, the
       copies of one submission carry one message id, and the store holds
       no more messages than the submissions that may have made one.
  A submission that got no answer but whose copy carries its id (the
  Message-ID the server wrote) was stored: it is held to a. and b. too.

The seed (printed at the start) fixes the fault plan, the submitters'
choices, the scheduler and the providers' weights and priorities, not the
interleaving with the processes, so a replay with the same seed
reproduces the same storm, not the same instant.  Every loop is bounded
in count and time; all traffic stays on 127.0.0.1.

Providers: m1 and m2 (maildir, supervised), m3 (maildir, its agent run by
the test), s (the sendgrid connector, supervised, aimed at ChaosHttp) and
t (the smtp connector, supervised, aimed at ChaosSmtp): the stand-ins
are in tests/fakes/chaos_fakes.py.  A copy
"received" is a file in a maildir's new/, or a request or message a
stand-in read whole in a mode where a real provider may have kept it.
"""

import http.client as httpclient
import json
import os
import random
import re
import signal
import smtplib
import socket
import sys
import threading
import time
import urllib.parse

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
from chaos_fakes import (HTTP_FAULTS, SMTP_FAULTS, TAG_RE,  # noqa: E402
                         ChaosHttp, ChaosSmtp, Lines)

# The id the server wrote into the Message-ID of a message it built or
# that came without one: it ties a copy to its message.
MID_RE = re.compile(rb"(?im)^Message-Id:[ \t]*<([0-9A-Z]{26})@")
# The maildir provider whose agent the test runs by hand (spawn = no): it
# outlives a server killed under it and connects again.
HAND = "m3"
SCHEDULERS = ("round_robin", "random", "weighted", "priority",
              "least_outstanding")


def _log(*a):
    print("chaos %.3f" % time.monotonic(), *a, flush=True)


def maildir_tags(path, ids=None):
    """{tag: copies} of the files in path/new; ids, when given, gets
    {tag: set of message ids} from their Message-ID headers."""
    out = {}
    d = os.path.join(path, "new")
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for name in names:
        try:
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        tags = set(TAG_RE.findall(data))
        if len(tags) == 1:
            t = tags.pop().decode()
            out[t] = out.get(t, 0) + 1
            _note_id(ids, t, data)
    return out


def _note_id(ids, tag, data):
    m = MID_RE.search(data.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0])
    if ids is not None and m:
        ids.setdefault(tag, set()).add(m.group(1).decode())


# ----------------------------------------------------------- submissions


class Sub:
    """One submission: its tag, its intake, and each answer it got as
    (result, id or None, detail)."""

    def __init__(self, tag, kind, key=None):
        self.tag = tag
        self.kind = kind
        self.key = key
        self.answers = []

    def results(self):
        return [a[0] for a in self.answers]

    def ids(self):
        return {a[1] for a in self.answers if a[0] == "accepted"}


def _http_send(port, method, path, body, headers):
    """(result, status, headers, body): result is unsent, unknown or
    answered."""
    conn = httpclient.HTTPConnection("127.0.0.1", port,
                                      timeout=h.scaled(8))
    try:
        try:
            conn.request(method, path, body=body, headers=headers)
        except OSError as e:
            return "unsent", None, None, repr(e)
        try:
            r = conn.getresponse()
            data = r.read()
        except (OSError, httpclient.HTTPException) as e:
            return "unknown", None, None, repr(e)
        return "answered", r.status, dict(r.getheaders()), data
    finally:
        conn.close()


def submit_v1(port, sub, key=None):
    body = json.dumps({"from": "Ann <ann@example.com>",
                       "to": ["bob@example.net"], "subject": sub.tag,
                       "text": sub.tag + "\n"}).encode()
    hdrs = {"Content-Type": "application/json"}
    if key:
        hdrs["Idempotency-Key"] = key
    res, st, _, data = _http_send(port, "POST", "/v1/messages", body, hdrs)
    if res != "answered":
        return res, None, data
    if st in (200, 202):
        return "accepted", json.loads(data)["id"], st
    return "refused", None, st


def submit_sendgrid(port, sub):
    body = json.dumps({
        "personalizations": [{"to": [{"email": "bob@example.net"}]}],
        "from": {"email": "ann@example.com"}, "subject": sub.tag,
        "content": [{"type": "text/plain", "value": sub.tag}]}).encode()
    res, st, hdrs, _ = _http_send(port, "POST", "/v3/mail/send", body,
                                  {"Content-Type": "application/json"})
    if res != "answered":
        return res, None, st
    if st == 202:
        return "accepted", hdrs.get("X-Message-Id"), st
    return "refused", None, st


def submit_mailgun(port, sub):
    body = urllib.parse.urlencode({
        "from": "ann@example.com", "to": "bob@example.net",
        "subject": sub.tag, "text": sub.tag}).encode()
    res, st, _, data = _http_send(
        port, "POST", "/v3/mg.example.com/messages", body,
        {"Content-Type": "application/x-www-form-urlencoded"})
    if res != "answered":
        return res, None, st
    if st == 200:
        mgid = json.loads(data)["id"]
        return "accepted", mgid[1:].split("@", 1)[0], st
    return "refused", None, st


def _mime(tag):
    return ("From: ann@example.com\r\nTo: bob@example.net\r\n"
            "Subject: %s\r\n\r\n%s\r\n" % (tag, tag)).encode()


def submit_smtplib(port, sub):
    try:
        s = smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(8))
    except OSError as e:
        return "unsent", None, repr(e)
    try:
        try:
            s.ehlo("chaos.test")
            code, _ = s.mail("ann@example.com")
            if code != 250:
                return "refused", None, code
            code, _ = s.rcpt("bob@example.net")
            if code not in (250, 251):
                return "refused", None, code
        except (OSError, smtplib.SMTPException) as e:
            return "unsent", None, repr(e)
        try:
            code, text = s.data(_mime(sub.tag))
        except smtplib.SMTPDataError as e:
            return "refused", None, repr(e)
        except (OSError, smtplib.SMTPException) as e:
            # It may have died after the final dot went out.
            return "unknown", None, repr(e)
        if code == 250:
            return "accepted", _queued_id(text), code
        return "refused", None, code
    finally:
        try:
            s.close()
        except OSError:
            pass


def _queued_id(text):
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    m = re.search(r"queued as (\S+)", text)
    return m.group(1) if m else None


def submit_pipelined(port, sub):
    """MAIL, RCPT and DATA in one write, as PIPELINING allows."""
    try:
        s = socket.create_connection(("127.0.0.1", port),
                                     timeout=h.scaled(8))
    except OSError as e:
        return "unsent", None, repr(e)
    r = Lines(s)
    try:
        try:
            r.reply()
            s.sendall(b"EHLO chaos.test\r\n")
            r.reply()
            s.sendall(b"MAIL FROM:<ann@example.com>\r\n"
                      b"RCPT TO:<bob@example.net>\r\nDATA\r\n")
            codes = [r.reply()[0] for _ in range(3)]
            if codes != [250, 250, 354]:
                return "refused", None, codes
            s.sendall(_mime(sub.tag) + b".\r\n")
        except OSError as e:
            return "unsent", None, repr(e)
        try:
            code, text = r.reply()
        except OSError as e:
            return "unknown", None, repr(e)
        try:
            s.sendall(b"QUIT\r\n")
        except OSError:
            pass
        if code == 250:
            return "accepted", _queued_id(text), code
        return "refused", None, code
    finally:
        s.close()


KINDS = ("v1", "v1_key", "smtplib", "pipelined", "sendgrid", "mailgun")


class Submitters:
    """Threads that submit until stop(), each with its own random."""

    def __init__(self, run, threads=3):
        self.run = run
        self.subs = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.n = 0
        self.threads = [threading.Thread(target=self._loop,
                                         args=(random.Random(
                                             run.seed * 1000 + i),),
                                         daemon=True)
                        for i in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self, timeout=60):
        self.stopping.set()
        deadline = time.monotonic() + h.scaled(timeout)
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
            if t.is_alive():
                raise h.WaitTimeout("a submitter did not finish")

    def _loop(self, rnd):
        for _ in range(100000):
            if self.stopping.is_set():
                return
            with self.lock:
                self.n += 1
                tag = "CHAOS-%d-%d" % (self.run.seed, self.n)
            kind = rnd.choice(KINDS)
            sub = Sub(tag, kind, key=("k-" + tag) if kind == "v1_key"
                      else None)
            with self.lock:
                self.subs.append(sub)
            try:
                self.one(sub, rnd)
            except Exception as e:  # noqa: BLE001 - a verdict, below
                # An answer the client could not read (a 202 without an
                # id, say) is reported, not taken for a refusal.
                sub.answers.append(("error", None, repr(e)))
            time.sleep(rnd.uniform(0.01, 0.06))

    def one(self, sub, rnd):
        c = self.run.cluster
        if sub.kind == "v1_key":
            # A client that got no answer sends the same body with the
            # same key again; so does one that got an answer, sometimes.
            for i in range(4):
                ans = submit_v1(c.http_port, sub, key=sub.key)
                sub.answers.append(ans)
                if ans[0] in ("accepted", "refused") and \
                        rnd.random() < 0.7:
                    return
                if self.stopping.is_set() and i > 0:
                    return
                time.sleep(rnd.uniform(0.05, 0.4))
            return
        if sub.kind == "v1":
            sub.answers.append(submit_v1(c.http_port, sub))
        elif sub.kind == "sendgrid":
            sub.answers.append(submit_sendgrid(c.http_port, sub))
        elif sub.kind == "mailgun":
            sub.answers.append(submit_mailgun(c.http_port, sub))
        elif sub.kind == "smtplib":
            sub.answers.append(submit_smtplib(self.run.smtp_port, sub))
        else:
            sub.answers.append(submit_pipelined(self.run.smtp_port, sub))


# ----------------------------------------------------------------- faults


def _children(pid):
    """Pids whose parent is pid (the server's supervised agents)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            out.append(int(name))
    return out


KINDS_OF_FAULT = ("kill_server", "kill_stalled", "kill_busy", "term_server",
                  "term_kill", "kill_startup", "stop_server", "kill_agent",
                  "stop_agent", "http_fault", "http_ok", "flap", "smtp_fault",
                  "smtp_ok", "disable", "enable", "hup")
WEIGHTS = (1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 2, 1, 3, 2, 1, 1, 1)
RESTARTS = ("kill_server", "kill_stalled", "kill_busy", "term_server",
            "term_kill", "kill_startup")


class Faults:
    """The fault thread: one random fault every 0.2 to 0.8 s."""

    def __init__(self, run):
        self.run = run
        self.rnd = random.Random(run.seed)
        self.stopped = {}  # pid -> when to SIGCONT it
        self.disabled = set()
        self.events = []
        self.stopping = threading.Event()
        self.last_kill = 0.0
        self.kind = None
        self.respawn_at = None
        self.plan = list(KINDS_OF_FAULT)
        self.rnd.shuffle(self.plan)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.error = None

    def note(self, what):
        self.events.append((round(time.monotonic() - self.run.t0, 2),
                            self.kind, what))
        _log("fault", what)

    def _loop(self):
        try:
            for _ in range(100000):
                # The plan (every kind once) goes faster, so that a short
                # run gets through it.
                gap = (0.1, 0.4) if self.plan else (0.2, 0.8)
                if self.stopping.wait(self.rnd.uniform(*gap)):
                    return
                self._cont_due(time.monotonic())
                self.one()
        except Exception as e:  # noqa: BLE001 - reported by the run
            self.error = e
            _log("fault thread failed:", repr(e))

    def agents(self):
        """The pids of the server's supervised agents and of the agent
        the test runs by hand (HAND), if it runs."""
        kids = sorted(_children(self.run.cluster.server.pid))
        hand = self.run.cluster.agents.get(HAND)
        if hand is not None and hand.alive():
            kids.append(hand.pid)
        return kids

    def kill_agent(self, pid):
        """SIGKILL; an agent run by hand is reaped and started again a
        moment later (the test is its supervisor)."""
        hand = self.run.cluster.agents.get(HAND)
        if hand is not None and hand.pid == pid:
            if hand.alive():
                hand.kill9()
            self.respawn_at = time.monotonic() + self.rnd.uniform(0.1, 2.0)
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def respawn(self, now):
        if self.respawn_at is not None and self.respawn_at <= now:
            self.respawn_at = None
            self.note("agent %s started again" % HAND)
            self.run.cluster.start_agent(HAND, wait=False)

    def _cont_due(self, now):
        self.respawn(now)
        for pid, when in list(self.stopped.items()):
            if when <= now:
                self._cont(pid)

    def _cont(self, pid):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        self.stopped.pop(pid, None)

    def one(self):
        run = self.run
        c = run.cluster
        planned = bool(self.plan)
        if planned:
            # The first faults are every kind once, in a random order, so
            # a short run meets each of them.
            k = self.plan.pop()
        else:
            k = self.rnd.choices(KINDS_OF_FAULT, weights=WEIGHTS)[0]
        now = time.monotonic()
        self.kind = k
        if k in RESTARTS:
            if not planned and now - self.last_kill < h.scaled(3):
                return
            self.kill_server(k)
        elif k == "stop_server":
            hold = self.rnd.uniform(0.3, 3.0)
            self.note("SIGSTOP server for %.1fs" % hold)
            c.server.signal(signal.SIGSTOP)
            try:
                time.sleep(hold)
            finally:
                c.server.signal(signal.SIGCONT)
        elif k in ("kill_agent", "stop_agent"):
            kids = self.agents()
            if not kids:
                return
            pid = self.rnd.choice(kids)
            if k == "kill_agent":
                self.note("kill -9 agent %d" % pid)
                self.kill_agent(pid)
            elif pid not in self.stopped:
                # Now and then longer than the supervisor takes before
                # it kills a silent agent as hung (5 s).
                hold = (self.rnd.uniform(0.2, 3.0)
                        if self.rnd.random() < 0.9
                        else h.scaled(self.rnd.uniform(5.5, 8.0)))
                self.note("SIGSTOP agent %d for %.1fs" % (pid, hold))
                os.kill(pid, signal.SIGSTOP)
                self.stopped[pid] = now + hold
        elif k == "http_fault":
            run.http.mode = self.rnd.choice(HTTP_FAULTS)
            self.note("provider s: " + run.http.mode)
        elif k == "http_ok":
            run.http.mode = "ok"
            self.note("provider s: ok")
        elif k == "flap":
            self.note("provider s: flapping")
            for _ in range(self.rnd.randint(2, 6)):
                run.http.mode = self.rnd.choice(HTTP_FAULTS + ("ok",))
                time.sleep(self.rnd.uniform(0.05, 0.3))
            run.http.mode = "ok"
        elif k == "smtp_fault":
            run.smtp.mode = self.rnd.choice(SMTP_FAULTS)
            self.note("provider t: " + run.smtp.mode)
        elif k == "smtp_ok":
            run.smtp.mode = "ok"
            self.note("provider t: ok")
        elif k in ("disable", "enable"):
            name = self.rnd.choice(run.names)
            r = c.post("/v1/providers/%s/%s" % (name, k))
            self.note("%s %s: %d" % (k, name, r.status))
            if r.status == 200:
                (self.disabled.add if k == "disable"
                 else self.disabled.discard)(name)
        else:
            self.note("SIGHUP server")
            c.server.signal(signal.SIGHUP)

    def kill_server(self, how):
        """kill -9 (or SIGTERM: term_server) of the server and a
        restart.  kill_stalled: every agent
        is stopped first for a moment and killed with the server, so that
        messages are handed out (`sending`) and never delivered: the
        restart must find each of them and send it again.  kill_busy:
        both stand-ins hold what they read for a moment first, so that
        messages they have are `sending` when the server dies: sent
        again after the restart, each is a duplicate that must be on
        record."""
        c = self.run.cluster
        stalled = how == "kill_stalled"
        if how == "kill_busy":
            hold = self.rnd.uniform(0.3, 1.0)
            self.note("stand-ins hold for %.1fs, then kill -9 server" % hold)
            self.run.http.mode = self.run.smtp.mode = "blackhole"
            time.sleep(hold)
        if stalled:
            kids = self.agents()
            hold = self.rnd.uniform(0.3, 1.0)
            self.note("SIGSTOP all %d agents for %.1fs, then kill -9 server"
                      % (len(kids), hold))
            for pid in kids:
                if pid not in self.stopped:
                    os.kill(pid, signal.SIGSTOP)
                    self.stopped[pid] = 0
            time.sleep(hold)
        elif how in ("kill_server", "kill_startup"):
            self.note("kill -9 server")
        self.last_kill = time.monotonic()
        if how == "term_server":
            # A graceful stop: drained, links closed, store closed, exit 0.
            self.note("SIGTERM server")
            for pid in list(self.stopped):
                self._cont(pid)
            c.server.signal(signal.SIGTERM)
            rc = c.server.wait_exit(20)
            if rc != 0:
                raise AssertionError("server exited %s on SIGTERM" % rc)
        elif how == "term_kill":
            # A crash in the middle of a graceful stop.
            hold = self.rnd.uniform(0.0, 1.0)
            self.note("SIGTERM server, kill -9 %.2fs later" % hold)
            c.server.signal(signal.SIGTERM)
            time.sleep(hold)
            c.server.kill9()
        else:
            c.server.kill9()
        if stalled:
            # The whole host went: the agents die before they wake, with
            # what they were handed undelivered.
            for pid in kids:
                self.stopped.pop(pid, None)
                self.kill_agent(pid)
        # The old agents, continued, find their server gone and exit.
        for pid in list(self.stopped):
            self._cont(pid)
        # Disabled providers come back enabled with a new process.
        self.disabled.clear()
        if how == "kill_busy":
            self.run.http.mode = self.run.smtp.mode = "ok"
        c.start_server(wait=False)
        if how == "kill_startup":
            # A crash while the server starts (recovers, loads, spawns).
            hold = self.rnd.uniform(0.0, 0.5)
            self.note("kill -9 server %.2fs into its start" % hold)
            time.sleep(hold)
            c.server.kill9()
            c.start_server(wait=False)
        h.wait_for(lambda: c.get("/healthz").status == 200, 20,
                   "server back after kill -9")

    def clear(self):
        """Every fault off: agents continued, provider ok, all enabled."""
        self.stopping.set()
        self.thread.join(h.scaled(30))
        for pid in list(self.stopped):
            self._cont(pid)
        self.respawn(float("inf"))
        self.run.http.mode = "ok"
        self.run.smtp.mode = "ok"
        for name in self.run.names:
            h.wait_for(lambda n=name: self.run.cluster.post(
                "/v1/providers/%s/enable" % n).status == 200, 20,
                "provider %s enabled" % name)


# ------------------------------------------------------------------- run


class Run:
    def __init__(self, make_cluster, seed, seconds):
        self.seed = seed
        self.seconds = seconds
        self.names = ("m1", "m2", HAND, "s", "t")
        self.http = ChaosHttp().start()
        self.smtp = ChaosSmtp().start()
        self.smtp_port = h.free_port()
        # The seed also picks the scheduler, and each provider's weight
        # and priority (a few tiers under `priority`).
        rnd = random.Random(seed * 7 + 1)
        self.scheduler = rnd.choice(SCHEDULERS)
        tune = {n: {"weight": rnd.randint(1, 5),
                    "priority": rnd.randint(1, 3)} for n in self.names}
        c = make_cluster(
            providers=self.names, spawn=True,
            server_extra={"smtp_listen": "127.0.0.1:%d" % self.smtp_port,
                          "max_attempts": 1000,
                          "message_ttl_s": 86400,
                          "retry_base_ms": 50, "retry_max_ms": 1000,
                          "scheduler": self.scheduler})
        keyfile = os.path.join(c.dir, "s.key")
        c.write_secret(keyfile, "SG.chaos-key")
        c.sections["s"] = {
            "type": "sendgrid", "spawn": "yes", "max_in_flight": 4,
            "base_url": self.http.base_url, "api_key_file": keyfile,
            "connect_timeout_ms": 1000,
            "request_timeout_ms": int(h.scaled(1500))}
        for n in ("m1", "m2"):
            c.sections[n] = c.provider_section(n)
        c.sections[HAND] = {"type": "maildir", "path": c.maildir(HAND),
                            "spawn": "no", "max_in_flight": 8}
        c.sections["t"] = {
            "type": "smtp", "spawn": "yes", "max_in_flight": 4,
            "host": "127.0.0.1", "port": self.smtp.port, "tls": "none",
            "helo": "relay.test", "connect_timeout_ms": 1000,
            "request_timeout_ms": int(h.scaled(1500))}
        for n in self.names:
            if n in c.sections:
                c.sections[n].update(tune[n])
        c.provider_extra = {}
        c.write_config()
        self.tune = tune
        self.cluster = c
        self.t0 = time.monotonic()

    def go(self):
        """Runs the storm, recovers, checks; returns a summary dict and
        raises AssertionError with every violation found."""
        _log("seed %d seconds %s (replay: CHAOS_SEED=%d CHAOS_SECONDS=%s)"
             " scheduler %s %s" % (self.seed, self.seconds, self.seed,
                                   self.seconds, self.scheduler,
                                   json.dumps(self.tune, sort_keys=True)))
        c = self.cluster
        c.start_server()
        c.start_agent(HAND, wait=False)
        h.wait_for(lambda: c.get("/readyz").status == 200, 20,
                   "a provider up")
        subs = Submitters(self)
        faults = Faults(self)
        self.t0 = time.monotonic()
        subs.start()
        faults.thread.start()
        deadline = self.t0 + self.seconds
        while time.monotonic() < deadline and faults.thread.is_alive():
            time.sleep(0.1)
        faults.clear()
        subs.stop()
        if faults.error is not None:
            raise faults.error
        _log("storm over; %d submissions, %d faults" %
             (len(subs.subs), len(faults.events)))
        self.drain()
        return self.check(subs.subs, faults)

    def drain(self, timeout=None):
        c = self.cluster
        timeout = timeout or max(30, self.seconds)

        def empty():
            s = c.stats()
            return s["queued"] == 0 and s["sending"] == 0

        try:
            h.wait_for(empty, timeout, "the queue to empty", interval=0.2)
        except h.WaitTimeout:
            print("stats:", c.stats(), "providers:",
                  c.get("/v1/providers").json)
            raise

    def copies(self):
        """{tag: [(provider, copies)]} from the stand-ins' records; and
        self.found: {tag: ids} from the copies that carry a Message-ID."""
        out = {}
        self.found = {}
        for name in ("m1", "m2", HAND):
            for tag, n in maildir_tags(self.cluster.maildir(name),
                                       self.found).items():
                out.setdefault(tag, []).append((name, n))
        with self.smtp.lock:
            heads = list(self.smtp.heads)
        for tag, head in heads:
            if tag is not None:
                _note_id(self.found, tag, head + b"\r\n\r\n")
        for tag, n in self.http.kept().items():
            out.setdefault(tag, []).append(("s", n))
        for tag, n in self.smtp.kept().items():
            out.setdefault(tag, []).append(("t", n))
        return out

    def check(self, subs, faults):
        c = self.cluster
        copies = self.copies()
        bad = []
        counts = {}
        for sub in subs:
            res = sub.results()
            got = copies.get(sub.tag, [])
            total = sum(n for _, n in got)
            ids = sub.ids()
            verdict = ("accepted" if ids else
                       "unknown" if {"unknown", "error"} & set(res) else
                       "refused")
            counts[verdict] = counts.get(verdict, 0) + 1
            if "error" in res:
                bad.append("%s (%s): an answer no client could read: %r" %
                           (sub.tag, sub.kind, sub.answers))
            if len(ids) > 1:
                bad.append("d: %s (key %s) answered with two ids %s" %
                           (sub.tag, sub.key, sorted(ids)))
            found = self.found.get(sub.tag, set())
            if verdict == "refused" and total:
                bad.append("c: %s refused %r yet received %r" %
                           (sub.tag, sub.answers, got))
            if len(ids | found) > 1:
                bad.append("d: %s (%s) is more than one message: answered "
                           "%s, copies of %s" % (sub.tag, sub.kind,
                                                 sorted(ids), sorted(found)))
            # One that got no answer but reached a provider was stored:
            # its record is checked as well.
            for mid in ids or found:
                bad += self.check_one(sub, mid, got)
        answers = {}
        for sub in subs:
            for a in sub.answers:
                k = a[0] if a[0] in ("accepted", "unsent", "unknown") \
                    else "refused %s" % (a[2],)
                answers[k] = answers.get(k, 0) + 1
        kinds = {}
        for _, k, _ in faults.events:
            kinds[k] = kinds.get(k, 0) + 1
        held = {}
        for v in copies.values():
            for name, n in v:
                held[name] = held.get(name, 0) + n
        summary = {"seed": self.seed, "submissions": len(subs),
                   "copies": held, "tied_to_ids": len(self.found),
                   "faults": len(faults.events), "verdicts": counts,
                   "answers": answers, "fault_kinds": kinds,
                   "duplicates": sum(1 for v in copies.values()
                                     if sum(n for _, n in v) > 1),
                   "stats": c.stats()}
        _log("summary", json.dumps(summary, sort_keys=True))
        # No message more than the submissions that may have stored one:
        # an idempotent resubmission makes none.
        made = sum(summary["stats"].values())
        if made > counts.get("accepted", 0) + counts.get("unknown", 0):
            bad.append("d: %d messages stored for %d accepted and %d "
                       "unanswered submissions" %
                       (made, counts.get("accepted", 0),
                        counts.get("unknown", 0)))
        if bad:
            _log("faults:", faults.events)
            raise AssertionError(
                "seed %d: %d invariant violations:\n%s" %
                (self.seed, len(bad), "\n".join(bad[:40])))
        return summary

    def check_one(self, sub, mid, got):
        bad = []
        r = self.cluster.get("/v1/messages/" + mid)
        if r.status != 200:
            return ["a: %s accepted as %s, GET says %r" %
                    (sub.tag, mid, r)]
        m = r.json
        if m["status"] != "delivered":
            bad.append("a: %s (%s, %s) is %s: %r" %
                       (sub.tag, mid, sub.kind, m["status"], m))
            return bad
        if dict(got).get(m["provider"], 0) < 1:
            bad.append("a: %s (%s) delivered by %s, which holds no copy "
                       "(copies %r)" % (sub.tag, mid, m["provider"], got))
        # Delivered once, where it says: a second `delivered` would be a
        # copy sent knowingly, with no possible duplicate on record.
        did = [x["provider"] for x in m["attempts"]
               if x["outcome"] == "delivered"]
        if did != [m["provider"]]:
            bad.append("b: %s (%s) delivered by %s, attempts say %r" %
                       (sub.tag, mid, m["provider"], m["attempts"]))
        # Each copy a provider holds is an attempt there on record: the
        # one delivered, or one that may have reached it.
        for name, n in got:
            mine = [a for a in m["attempts"] if a["provider"] == name]
            may = sum(1 for a in mine
                      if a["outcome"] in ("ambiguous", "lost"))
            did = sum(1 for a in mine if a["outcome"] == "delivered")
            if n > may + did:
                bad.append("b: %s (%s, %s) received %d times at %s (all: "
                           "%r) with %d delivered and %d possible "
                           "duplicates on record there: %r" %
                           (sub.tag, mid, sub.kind, n, name, got, did,
                            may, m["attempts"]))
        return bad


def seed_from_env(default):
    v = os.environ.get("CHAOS_SEED")
    return int(v) if v else default


def seconds_from_env(default):
    v = os.environ.get("CHAOS_SECONDS")
    return float(v) if v else default
