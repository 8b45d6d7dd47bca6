"""Helpers for the integration suite: black-box tests of the real binary.

A Cluster is one temporary folder holding a configuration file, the agent
secret, the data folder, the maildirs and a log file per process.  It starts
`shivneri serve` and `shivneri agent` processes on free loopback ports, talks
to the HTTP API with the standard library only, and kills every process it
started when it is closed, whatever happened in the test.

Every wait polls a condition against a deadline (wait_for) and fails with a
message that says what it was waiting for; nothing sleeps and hopes.  Under
a sanitizer build every timeout is stretched by TIME_SCALE.
"""

import email.parser
import http.client as httpclient
import json
import os
import resource
import select
import signal
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BIN = os.environ.get("SHIVNERI_BIN", "/work/main/build/shivneri")


def _sanitized(path):
    """True when the binary was built with ASan (it carries the runtime)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"AddressSanitizer" in data


TIME_SCALE = float(os.environ.get("SHIVNERI_IT_SCALE", "0") or 0) or (
    3.0 if _sanitized(BIN) else 1.0)

ERROR_CODES = {
    "invalid_json", "invalid_field", "missing_field", "too_large",
    "unsupported_media_type", "not_found", "unauthorized", "unavailable",
    "idempotency_conflict", "bad_request", "timeout", "length_required",
    "method_not_allowed",
}

SANITIZER_MARKS = (b"ERROR: AddressSanitizer", b"runtime error:",
                   b"ERROR: LeakSanitizer", b"ERROR: UndefinedBehavior")


def scaled(seconds):
    return seconds * TIME_SCALE


class WaitTimeout(AssertionError):
    pass


def wait_for(cond, timeout, what, interval=0.02):
    """Polls cond() until it returns a truthy value, which is returned.

    An AssertionError from cond ends the wait at once (it is a verdict);
    other exceptions (a refused connection, say) count as "not yet" and
    the last one is reported.
    Raises WaitTimeout naming `what` once `timeout` (scaled) has passed.
    """
    deadline = time.monotonic() + scaled(timeout)
    last_exc = None
    last_val = None
    while True:
        try:
            last_val = cond()
            if last_val:
                return last_val
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - reported below
            last_exc = e
        if time.monotonic() >= deadline:
            msg = "timed out after %.1fs waiting for %s" % (scaled(timeout),
                                                           what)
            if last_exc is not None:
                msg += " (last error: %r)" % (last_exc,)
            else:
                msg += " (last value: %r)" % (last_val,)
            raise WaitTimeout(msg)
        time.sleep(interval)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def pid_alive(pid):
    """False for a pid that is gone or a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def rss(pid):
    """The resident size of process pid, in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


def descriptor_churn(pid, port, limit, log_path, needle):
    """Cuts server pid's descriptors to limit, fills them with connections
    to port until accept(2) fails (the first log line with needle), then
    for 3 s frees one and takes another every 50 ms (a bounded churn):
    each frees a descriptor that the server's next retry of accept takes,
    so a pause ends and the next begins at every retry.  Returns the log
    lines with needle; every connection is closed on return."""
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    held = []

    def lines():
        with open(log_path, encoding="utf-8") as f:
            return [ln for ln in f if needle in ln]
    try:
        for _ in range(limit + 10):
            held.append(socket.create_connection(("127.0.0.1", port),
                                                 timeout=scaled(5)))
        wait_for(lines, 5, "the first accept pause logged")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3:
            held.pop(0).close()
            held.append(socket.create_connection(("127.0.0.1", port),
                                                 timeout=scaled(5)))
            time.sleep(0.05)
        return lines()
    finally:
        for s in held:
            s.close()


def tail(path, n=60):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return "(no log %s)" % path
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:])


# --------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        self.json = None
        try:
            self.json = json.loads(body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            pass

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:300])


def http(port, method, path, body=None, headers=None, timeout=10):
    """One request on a fresh connection.  body: dict/list (JSON), bytes
    or str.  Returns a Response."""
    hdrs = {}
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    elif isinstance(body, str):
        body = body.encode("utf-8")
        hdrs["Content-Type"] = "application/json"
    elif body is not None:
        hdrs["Content-Type"] = "application/json"
    if headers:
        hdrs.update(headers)
    conn = httpclient.HTTPConnection("127.0.0.1", port,
                                      timeout=scaled(timeout))
    try:
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, dict(r.getheaders()), data)
    finally:
        conn.close()


def raw_http(port, head, body=b"", timeout=10, chunk=65536):
    """Sends a hand-made request (head: bytes up to and including the blank
    line) and then body in chunks, stopping as soon as the server answers,
    so that an early 413 is read before the server closes.  Returns
    (status, body bytes) or (None, b"") when the connection closed
    without an answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=scaled(timeout))
    got = b""
    try:
        s.sendall(head)
        off = 0
        while off < len(body):
            r, _, _ = select.select([s], [], [], 0)
            if r:
                break
            try:
                s.sendall(body[off:off + chunk])
            except (BrokenPipeError, ConnectionResetError):
                break
            off += chunk
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.1)
            if not r:
                if got and _complete(got):
                    break
                continue
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
            if _complete(got):
                break
    finally:
        s.close()
    if not got.startswith(b"HTTP/"):
        return None, b""
    status = int(got.split(b" ", 2)[1])
    _, _, rest = got.partition(b"\r\n\r\n")
    return status, rest


def _complete(data):
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            return len(rest) >= int(v.strip())
    return False


class StandInRequest:
    """One request a StandIn took: method, path (with its query), headers
    (a dict with lower-case names), body (bytes) and the status answered
    (None until the reply function has returned)."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.status = None

    def __repr__(self):
        return "<StandInRequest %s %s %r>" % (self.method, self.path,
                                              self.status)


class _StandInServer(ThreadingHTTPServer):
    daemon_threads = True  # a reply held open never blocks close()
    allow_reuse_address = True  # a fixed port can be taken again at once


class StandIn:
    """A stand-in HTTP server on 127.0.0.1 for the daemon, the CLI or a
    browser to talk to.

    reply(req) is called in the request's own thread with a StandInRequest
    and returns (status, body) or (status, body, content_type); the body is
    sent with its Content-Length, and with no Content-Type when the type is
    None.  It may block (a receiver that hangs) and may read attributes the
    test changes meanwhile.  Every request is recorded, after reply has
    returned, in the order of the replies (requests()).  port=0 takes a
    free port; a fixed port lets a test stop a server and start another on
    the same port.  close() stops serving and closes the socket; a reply
    still blocked is left to its daemon thread.
    """

    METHODS = ("GET", "POST", "PUT", "DELETE")

    def __init__(self, reply, port=0):
        stand_in = self
        self.reply = reply
        self.lock = threading.Lock()
        self.got = []

        class Handler(BaseHTTPRequestHandler):
            def handle_one(self):
                n = int(self.headers.get("Content-Length") or 0)
                req = StandInRequest(
                    self.command, self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(n) if n else b"")
                out = stand_in.reply(req)
                status, body = out[0], out[1]
                ctype = out[2] if len(out) > 2 else None
                req.status = status
                with stand_in.lock:
                    stand_in.got.append(req)
                self.send_response(status)
                if ctype is not None:
                    self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        for method in self.METHODS:
            setattr(Handler, "do_" + method, Handler.handle_one)
        self.srv = _StandInServer(("127.0.0.1", port), Handler)
        self.port = self.srv.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.srv.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def requests(self):
        """A copy of the requests taken so far, in the order answered."""
        with self.lock:
            return list(self.got)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.thread.join(scaled(5))


def assert_error(resp, status, codes=None):
    """resp is an error answer of SPEC.md with the given status."""
    assert resp.status == status, resp
    assert isinstance(resp.json, dict), resp
    err = resp.json.get("error")
    assert isinstance(err, dict), resp
    assert err.get("code") in (codes or ERROR_CODES), resp
    assert isinstance(err.get("message"), str) and err["message"], resp


def message(n=0, **kw):
    m = {"from": "Ann <ann@example.com>", "to": ["bob@example.net"],
         "subject": "test %d" % n, "text": "hello %d\n" % n}
    m.update(kw)
    return m


# --------------------------------------------------------------- maildir


_parser = email.parser.BytesHeaderParser()


def maildir_ids(path):
    """{id: number of files} of the messages in path/new, by the
    Message-ID header <ID@domain>."""
    out = {}
    d = os.path.join(path, "new")
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return out
    for name in names:
        try:
            with open(os.path.join(d, name), "rb") as f:
                msg = _parser.parse(f)
        except FileNotFoundError:
            continue
        mid = (msg.get("Message-ID") or "").strip()
        if mid.startswith("<") and "@" in mid:
            mid = mid[1:].split("@", 1)[0]
        out[mid] = out.get(mid, 0) + 1
    return out


def maildir_count(path):
    d = os.path.join(path, "new")
    try:
        return len(os.listdir(d))
    except FileNotFoundError:
        return 0


# --------------------------------------------------------------- processes


class Proc:
    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.started = time.monotonic()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=self.log, stderr=self.log,
                                  start_new_session=True, env=env)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.p.poll() is None:
            os.kill(self.p.pid, sig)

    def kill9(self):
        """SIGKILL and reap this process (only this pid)."""
        self.signal(signal.SIGKILL)
        self.p.wait(timeout=scaled(10))

    def wait_exit(self, timeout):
        try:
            return self.p.wait(timeout=scaled(timeout))
        except subprocess.TimeoutExpired:
            raise WaitTimeout("%s did not exit within %.1fs" %
                              (self.name, scaled(timeout)))

    def cleanup(self):
        """Kills the whole session (spawned agents too) and reaps."""
        try:
            os.killpg(self.p.pid, signal.SIGCONT)
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()


class Cluster:
    """A temporary set-up: config, secret, data folder, processes."""

    def __init__(self, tmpdir, providers=("a", "b"), spawn=False,
                 max_in_flight=8, server_extra=None, provider_extra=None):
        self.dir = str(tmpdir)
        self.procs = []
        self.agents = {}
        self.server = None
        self.secret_path = os.path.join(self.dir, "agent.secret")
        self.write_secret(self.secret_path, os.urandom(32).hex())
        self.data_dir = os.path.join(self.dir, "data")
        self.providers = list(providers)
        self.spawn = spawn
        self.max_in_flight = max_in_flight
        self.server_extra = dict(server_extra or {})
        self.provider_extra = dict(provider_extra or {})
        # Sections that replace a provider's maildir one (smtp_provider).
        self.sections = {}
        self.new_ports()
        self.config_path = os.path.join(self.dir, "shivneri.ini")
        self.write_config()

    # -- configuration

    @staticmethod
    def write_secret(path, text):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text + "\n")
        os.chmod(path, 0o600)

    def new_ports(self):
        self.http_port = free_port()
        self.agent_port = free_port()
        while self.agent_port == self.http_port:
            self.agent_port = free_port()

    def maildir(self, name):
        return os.path.join(self.dir, "maildir", name)

    def server_section(self, secret_path=None):
        s = {
            "data_dir": self.data_dir,
            "http_listen": "127.0.0.1:%d" % self.http_port,
            "smtp_listen": "",
            "agent_listen": "127.0.0.1:%d" % self.agent_port,
            "agent_secret_file": secret_path or self.secret_path,
            "scheduler": "round_robin",
            "heartbeat_interval_ms": 200,
            "heartbeat_timeout_ms": 800,
            "retry_base_ms": 100,
            "retry_max_ms": 2000,
            "max_attempts": 10,
        }
        s.update(self.server_extra)
        return s

    def provider_section(self, name, spawn=None):
        if name in self.sections:
            return dict(self.sections[name])
        p = {"type": "maildir", "path": self.maildir(name),
             "spawn": "yes" if (self.spawn if spawn is None else spawn)
             else "no",
             "max_in_flight": self.max_in_flight}
        p.update(self.provider_extra)
        return p

    def smtp_provider(self, name, port, **extra):
        """Makes provider name the smtp connector, started by hand (spawn
        = no), aimed at a stand-in on 127.0.0.1:port without TLS (extra
        keys are added or override), and rewrites the file."""
        sec = {"type": "smtp", "spawn": "no", "max_in_flight": 4,
               "host": "127.0.0.1", "port": port, "tls": "none",
               "helo": "relay.test"}
        sec.update(extra)
        self.sections[name] = sec
        self.write_config()

    @staticmethod
    def render(server, providers):
        """INI text of a [server] dict and {name: dict} providers."""
        lines = ["[server]"]
        for k, v in server.items():
            lines.append("%s = %s" % (k, v))
        for name, sec in providers.items():
            lines.append("")
            lines.append("[provider.%s]" % name)
            for k, v in sec.items():
                lines.append("%s = %s" % (k, v))
        return "\n".join(lines) + "\n"

    def write_config(self):
        text = self.render(self.server_section(),
                           {n: self.provider_section(n)
                            for n in self.providers})
        with open(self.config_path, "w") as f:
            f.write(text)

    def write_agent_config(self, fname, extra_providers=None,
                           secret_path=None):
        """A config file for agents started by hand: the same [server],
        the server's providers, and extra_providers {name: dict|None}."""
        provs = {n: self.provider_section(n, spawn=False)
                 for n in self.providers}
        for name, sec in (extra_providers or {}).items():
            provs[name] = sec or self.provider_section(name, spawn=False)
        path = os.path.join(self.dir, fname)
        with open(path, "w") as f:
            f.write(self.render(self.server_section(secret_path), provs))
        return path

    # -- processes

    def _proc(self, name, argv):
        p = Proc(name, argv, os.path.join(self.dir, name + ".log"))
        self.procs.append(p)
        return p

    def start_server(self, wait=True):
        """Starts serve and waits for /healthz.  Retries on other ports
        when one was taken between free_port() and the bind."""
        for attempt in range(3):
            n = sum(1 for p in self.procs if p.name.startswith("server"))
            self.server = self._proc("server%d" % n,
                                     [BIN, "serve", "-c", self.config_path])
            if not wait:
                return self.server
            try:
                self.wait_healthy()
                return self.server
            except WaitTimeout:
                log = tail(self.server.log_path, 20)
                if (self.server.alive() or "in use" not in log
                        or attempt == 2):
                    raise
                self.server.cleanup()
                self.new_ports()
                self.write_config()
        return self.server

    def wait_healthy(self, timeout=10):
        def ok():
            if self.server.p.poll() is not None:
                raise WaitTimeout("server exited with %s:\n%s" %
                                  (self.server.p.returncode,
                                   tail(self.server.log_path, 30)))
            return self.get("/healthz").status == 200
        return wait_for(ok, timeout, "server /healthz")

    def start_agent(self, name, config=None, wait=True, tag=None):
        tag = tag or name
        n = sum(1 for p in self.procs if p.name.startswith("agent-" + tag))
        p = self._proc("agent-%s-%d" % (tag, n),
                       [BIN, "agent", "-c", config or self.config_path,
                        "-p", name])
        self.agents[name] = p
        if wait:
            self.wait_state(name, "up")
        return p

    def kill_all(self):
        for p in reversed(self.procs):
            p.cleanup()

    def sanitizer_reports(self):
        """Log files that hold a sanitizer report."""
        bad = []
        for p in self.procs:
            try:
                with open(p.log_path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if any(m in data for m in SANITIZER_MARKS):
                bad.append(p.log_path)
        return sorted(set(bad))

    def dump_logs(self):
        seen = set()
        for p in self.procs:
            if p.log_path in seen:
                continue
            seen.add(p.log_path)
            print("----- %s (%s) -----" % (p.name, p.log_path))
            print(tail(p.log_path))

    # -- API

    def get(self, path, **kw):
        return http(self.http_port, "GET", path, **kw)

    def post(self, path, body=None, **kw):
        return http(self.http_port, "POST", path, body=body, **kw)

    def submit(self, msg=None, headers=None):
        """POST /v1/messages; returns the id (asserts 202)."""
        r = self.post("/v1/messages", msg if msg is not None else message(),
                      headers=headers)
        assert r.status == 202, r
        assert r.json["status"] == "queued", r
        assert isinstance(r.json["id"], str) and r.json["id"], r
        return r.json["id"]

    def submit_many(self, n, threads=4, start=0):
        """n submissions from several threads; returns the ids in order
        of acknowledgement."""
        ids = []
        errors = []
        lock = threading.Lock()
        counter = iter(range(start, start + n))

        def worker():
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    mid = self.submit(message(i))
                except Exception as e:  # noqa: BLE001
                    with lock:
                        errors.append(e)
                    return
                with lock:
                    ids.append(mid)

        ts = [threading.Thread(target=worker) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=scaled(120))
        assert not errors, errors[:3]
        assert len(ids) == n, (len(ids), n)
        return ids

    def msg(self, mid):
        r = self.get("/v1/messages/" + mid)
        assert r.status == 200, r
        return r.json

    def providers_map(self):
        r = self.get("/v1/providers")
        assert r.status == 200, r
        return {p["name"]: p for p in r.json["providers"]}

    def provider(self, name):
        return self.providers_map().get(name)

    def stats(self):
        r = self.get("/v1/stats")
        assert r.status == 200, r
        return r.json

    def wait_state(self, name, state, timeout=10):
        def cond():
            p = self.provider(name)
            if p is not None and p["state"] == state:
                return p
            return None
        try:
            return wait_for(cond, timeout,
                            "provider %s to be %s" % (name, state))
        except WaitTimeout:
            print("providers:", self.get("/v1/providers").json)
            raise

    def wait_delivered(self, ids, timeout=30):
        pending = set(ids)

        def cond():
            for mid in list(pending):
                m = self.msg(mid)
                if m["status"] == "delivered":
                    pending.discard(mid)
                elif m["status"] == "failed":
                    raise AssertionError("message %s failed: %r" % (mid, m))
            return not pending
        try:
            wait_for(cond, timeout, "%d messages to be delivered" % len(ids),
                     interval=0.05)
        except WaitTimeout as e:
            sample = [self.msg(m) for m in list(pending)[:3]]
            raise WaitTimeout("%s; %d still pending, e.g. %r" %
                              (e, len(pending), sample))

    def all_maildir_ids(self, names=None):
        """{provider: {id: count}}"""
        return {n: maildir_ids(self.maildir(n))
                for n in (names or self.providers)}


def check_delivery(cluster, ids, names):
    """Every id has a file in one of the maildirs of names; an id with
    more than one file has a "lost" attempt; the provider recorded as
    delivering holds a file.  Returns {provider: set of ids}."""
    found = cluster.all_maildir_ids(names)
    where = {}
    for mid in ids:
        m = cluster.msg(mid)
        assert m["status"] == "delivered", m
        copies = sum(found[n].get(mid, 0) for n in names)
        assert copies >= 1, "no maildir file for %s: %r" % (mid, m)
        if copies > 1:
            lost = [a for a in m["attempts"] if a["outcome"] == "lost"]
            assert lost, "duplicate delivery of %s without a lost " \
                "attempt: %r" % (mid, m)
        prov = m["provider"]
        assert prov in names, m
        assert found[prov].get(mid, 0) >= 1, \
            "%s says delivered by %s but no file there" % (mid, prov)
        where.setdefault(prov, set()).add(mid)
    return where


class Burst:
    """Submissions from several threads in the background.

    n: how many to submit (None: until stop()).  Every id answered 202 is
    in `acked`, with the time it came back; an error is recorded with its
    time in `errors` and ends that thread (after a server kill, say), so a
    test can tell errors before and after the moment it broke something.
    """

    def __init__(self, cluster, n=None, threads=4, start=0):
        self.cluster = cluster
        self.n = n
        self.acked = []
        self.errors = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.next = start
        self.end = None if n is None else start + n
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(threads)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def count(self):
        with self.lock:
            return len(self.acked)

    def _take(self):
        with self.lock:
            if self.stopping.is_set():
                return None
            if self.end is not None and self.next >= self.end:
                return None
            i = self.next
            self.next += 1
            return i

    def _run(self):
        while True:
            i = self._take()
            if i is None:
                return
            try:
                r = http(self.cluster.http_port, "POST", "/v1/messages",
                         message(i), timeout=30)
                if r.status != 202:
                    raise AssertionError("submission %d: %r" % (i, r))
                mid = r.json["id"]
            except Exception as e:  # noqa: BLE001 - recorded
                with self.lock:
                    self.errors.append((time.monotonic(), e))
                return
            with self.lock:
                self.acked.append(mid)

    def stop(self):
        self.stopping.set()

    def join(self, timeout=120):
        """Waits for every thread; returns the acknowledged ids."""
        deadline = time.monotonic() + scaled(timeout)
        for t in self.threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
            if t.is_alive():
                raise WaitTimeout("a submission thread did not finish")
        return list(self.acked)
