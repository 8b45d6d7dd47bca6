"""Shared pieces of the benchmark drivers (Python 3 standard library only).

A driver makes a scratch folder, writes a configuration into it, starts
`shivneri serve` (and maybe agents) on free loopback ports, waits for
/healthz, measures, and stops everything it started.  Every child is
registered with the Bench object, which stops them on normal exit, on an
exception, and on SIGINT/SIGTERM, so an interrupted run leaves nothing
behind.  Every wait has a deadline; nothing here polls without one.
"""

import atexit
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.environ.get("SHIVNERI_BIN",
                             os.path.join(REPO, "build", "shivneri"))
DEFAULT_TOOLS = os.environ.get("BENCH_TOOLS",
                               os.path.join(REPO, "build", "bench"))


def free_port():
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def add_common_args(ap):
    ap.add_argument("--bin", default=DEFAULT_BIN, help="the shivneri binary")
    ap.add_argument("--tools", default=DEFAULT_TOOLS,
                    help="folder of loadgen, fsync_ceiling, sqlite_commit")
    ap.add_argument("--tmpdir", default=os.environ.get("BENCH_TMPDIR"),
                    help="where the scratch folder (and so the data dir) "
                         "is made; its filesystem is the one measured")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch folder (logs, data) afterwards")
    ap.add_argument("--json", action="store_true",
                    help="print one machine-readable line at the end")


class Http:
    """One keep-alive connection to the server's HTTP port, for polling."""

    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None):
        """(status, parsed JSON or None).  Reconnects once on a dead link."""
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(
                    "127.0.0.1", self.port, timeout=self.timeout)
            try:
                hdrs = {}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    hdrs["Content-Type"] = "application/json"
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                raw = resp.read()
                try:
                    doc = json.loads(raw) if raw else None
                except ValueError:
                    doc = None
                return resp.status, doc
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")

    def get(self, path):
        return self.request("GET", path)

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class Bench:
    """A scratch folder and the processes started in it."""

    def __init__(self, args, name):
        self.args = args
        self.name = name
        self.dir = tempfile.mkdtemp(prefix="shivneri-bench-%s-" % name,
                                    dir=args.tmpdir)
        self.procs = []
        self.logs = []
        atexit.register(self.cleanup)
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum, frame):
        self.cleanup()
        sys.exit(128 + signum)

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def tool(self, name):
        p = os.path.join(self.args.tools, name)
        if not os.access(p, os.X_OK):
            sys.exit("bench: %s not built (cmake --build build)" % p)
        return p

    def write_config(self, providers=(), server=None):
        """Writes bench.ini; returns (path, http_port, agent_port).

        providers: dicts with at least name and type; every other key is
        written into the section as is.  server: extra [server] keys.
        """
        http_port, agent_port = free_port(), free_port()
        keys = {
            "data_dir": self.path("data"),
            "http_listen": "127.0.0.1:%d" % http_port,
            "smtp_listen": "",
            "agent_listen": "127.0.0.1:%d" % agent_port,
            "agent_secret_file": self.path("agent.secret"),
            "scheduler": "round_robin",
        }
        keys.update(server or {})
        lines = ["; written by bench/%s.py" % self.name, "[server]"]
        lines += ["%s = %s" % (k, v) for k, v in keys.items()]
        for p in providers:
            lines += ["", "[provider.%s]" % p["name"]]
            lines += ["%s = %s" % (k, v) for k, v in p.items()
                      if k != "name"]
        conf = self.path("bench.ini")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        return conf, http_port, agent_port

    def spawn(self, argv, logname):
        """Starts argv with its output in logname; the process is ours."""
        log = open(self.path(logname), "ab")
        self.logs.append(log)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, cwd=self.dir)
        self.procs.append(p)
        return p

    def start_server(self, conf, http_port, timeout=20.0):
        if not os.access(self.args.bin, os.X_OK):
            sys.exit("bench: %s not built" % self.args.bin)
        p = self.spawn([self.args.bin, "serve", "-c", conf], "server.log")
        deadline = time.monotonic() + timeout
        h = Http(http_port, timeout=1.0)
        while time.monotonic() < deadline:
            if p.poll() is not None:
                sys.exit("bench: the server exited with %d; see %s"
                         % (p.returncode, self.path("server.log")))
            try:
                status, _ = h.get("/healthz")
                if status == 200:
                    h.close()
                    return p
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        h.close()
        sys.exit("bench: no /healthz within %.0f s; see %s"
                 % (timeout, self.path("server.log")))

    def stop(self, p, grace=10.0):
        """SIGTERM, then SIGKILL after grace seconds.  Returns the status."""
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGCONT)
                p.terminate()
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=grace)
        return p.returncode

    def cleanup(self):
        for p in reversed(self.procs):
            try:
                self.stop(p, grace=5.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.procs = []
        for log in self.logs:
            log.close()
        self.logs = []
        if self.dir is not None and not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def run_tool(self, argv, timeout):
        """Runs a bench tool with --json; returns its parsed last line."""
        r = subprocess.run(argv + ["--json"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout,
                           cwd=self.dir, check=False)
        lines = r.stdout.decode().strip().splitlines()
        if not lines:
            sys.exit("bench: %s printed nothing (status %d): %s"
                     % (argv[0], r.returncode, r.stderr.decode()[-500:]))
        return json.loads(lines[-1])

    def loadgen(self, port, extra, timeout):
        return self.run_tool([self.tool("loadgen"), "--port", str(port)]
                             + [str(x) for x in extra], timeout)


def wait_for(pred, timeout, interval=0.01):
    """Calls pred until it returns a true value or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def providers(h):
    """name -> provider object of GET /v1/providers ({} on trouble)."""
    try:
        status, doc = h.get("/v1/providers")
    except (OSError, http.client.HTTPException):
        return {}
    if status != 200 or not isinstance(doc, dict):
        return {}
    return {p.get("name"): p for p in doc.get("providers", [])}


def all_up(h, names):
    ps = providers(h)
    return all(ps.get(n, {}).get("state") == "up" for n in names)


def stats(h):
    status, doc = h.get("/v1/stats")
    if status != 200 or not isinstance(doc, dict):
        raise RuntimeError("GET /v1/stats answered %d" % status)
    return doc


def proc_status(pid):
    """VmRSS and VmHWM of pid in KiB, from /proc/PID/status."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def filesystem(path):
    """(mount point, fs type, device) holding path, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("/", "?", "?")
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) \
                    and len(mnt) >= len(best[0]):
                best = (mnt, fstype, dev)
    return best


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def emit(args, title, rows, doc):
    """Prints rows (label, value) as a small table, and doc as JSON."""
    print("== %s" % title)
    width = max(len(r[0]) for r in rows) if rows else 0
    for label, value in rows:
        print("  %-*s  %s" % (width, label, value))
    if args.json:
        print(json.dumps(doc, sort_keys=True))
    sys.stdout.flush()


def verdict(ok):
    return "PASS" if ok else "FAIL"
