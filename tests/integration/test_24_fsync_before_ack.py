"""Durability is proven, not assumed: no 202 leaves the server before the
write-ahead log holding its message has been flushed to disk.

The crash tests kill processes, and the page cache outlives a killed
process, so they would all pass with `PRAGMA synchronous = OFF`.  Here the
server runs under `strace -f`, takes a bounded number of submissions (some
one at a time, some concurrent, so that group commits carry several), and
stops; fsync_trace.py then reads the trace and fails the test for any 202
whose message's commit was not followed by a returned fsync/fdatasync of
the WAL before the 202's first byte was written.  The tests at the end feed
the checker small hand-written traces, so that its own verdicts are shown
to fail where they must, whatever the build under test does.

Shown to fail: with the store's `PRAGMA synchronous = FULL` changed to OFF
(a scratch build) the test reports "30 of 30 acknowledgements preceded the
flush of their commit ... no fsync/fdatasync of the WAL returned between
its transaction's commit frame at line 180 ... and the 202 (last WAL flush
before the 202: none)"; with NORMAL (in WAL mode, no flush at commit) it
fails the same way, 30 of 30, the last flush being the one at start-up.
"""

import os
import shutil
import signal

import pytest

import fsync_trace as ft
import shivneri_harness as h

SEQUENTIAL = 10
CONCURRENT = 20


def _children(pid):
    """Pids whose parent is pid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(name))
    return out


def _start_traced_server(c, trace_path):
    """Starts serve under strace; returns (the strace Proc, the server's
    pid).  Retries on other ports when one was taken meanwhile, as
    Cluster.start_server does."""
    # LeakSanitizer stops the world with ptrace, which fails under strace:
    # leaks are the other tests' business.
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                           ":detect_leaks=0").lstrip(":")
    for attempt in range(3):
        argv = ["strace", "-f", "-tt", "-xx", "-s", "1048576", "-o",
                trace_path, "-e", "trace=" + ft.SYSCALLS, h.BIN, "serve",
                "-c", c.config_path]
        p = h.Proc("server%d" % attempt, argv,
                   os.path.join(c.dir, "server%d.log" % attempt), env=env)
        c.procs.append(p)
        c.server = p
        try:
            c.wait_healthy(timeout=30)
            break
        except h.WaitTimeout:
            if p.alive() or "in use" not in h.tail(p.log_path, 20) \
                    or attempt == 2:
                raise
            c.new_ports()
            c.write_config()
    kids = h.wait_for(lambda: _children(p.pid), 10, "the traced server pid")
    assert len(kids) == 1, kids
    return p, kids[0]


def test_every_202_follows_a_wal_flush(make_cluster):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (scripts/install-deps.sh "
                    "installs it)")
    # No providers: only intake and the store write, and nothing forks.
    c = make_cluster(providers=())
    trace_path = os.path.join(c.dir, "serve.strace")
    tracer, server_pid = _start_traced_server(c, trace_path)

    ids = [c.submit(h.message(i, text="row %d\n" % i + "x" * (i * 300)))
           for i in range(SEQUENTIAL)]
    ids += c.submit_many(CONCURRENT, threads=5, start=SEQUENTIAL)
    assert len(set(ids)) == len(ids)

    # strace -o blocks fatal signals, so stop the server itself; strace
    # exits with the server's status once the server is gone.
    os.kill(server_pid, signal.SIGTERM)
    rc = tracer.wait_exit(60)
    assert rc == 0, "server under strace exited with %s:\n%s" % (
        rc, h.tail(tracer.log_path, 30))

    wal = os.path.join(c.data_dir, "shivneri.db-wal")
    trace, bad = ft.check_file(trace_path, wal, ids)
    assert not bad, ("%d of %d acknowledgements preceded the flush of "
                     "their commit (trace: %s):\n  %s" %
                     (len(bad), len(ids), trace_path,
                      "\n  ".join(bad[:5])))
    assert ft.commit_frames(trace.wal_writes), (
        "no WAL commit frame recognised in %s" % trace_path)


# ------------------------------------------------ the checker on its own


WAL = "/d/shivneri.db-wal"


def _hex(b):
    return "".join("\\x%02x" % x for x in b)


def _frame(page, commit):
    """The 24-byte WAL frame header of page (commit: db size, or 0)."""
    return page.to_bytes(4, "big") + commit.to_bytes(4, "big") + bytes(16)


class _Log:
    """Builds a strace -f -tt -xx log line by line."""

    def __init__(self):
        self.lines = []
        self.usec = 0

    def _t(self):
        self.usec += 10
        return "12:00:00.%06d" % self.usec

    def line(self, tid, text):
        self.lines.append("%d %s %s\n" % (tid, self._t(), text))

    def open_wal(self, tid=100, fd=7):
        # The writer thread (101) shares the loop thread's descriptors.
        self.line(tid, "clone3({flags=CLONE_VM|CLONE_FILES|CLONE_THREAD}, "
                  "88) = 101")
        self.line(tid, 'openat(AT_FDCWD, "%s", O_RDWR|O_CREAT, 0644) = %d'
                  % (_hex(WAL.encode()), fd))

    def frame(self, off, page, commit, data, tid=101, fd=7, split=False):
        hdr = _frame(page, commit)
        if split:
            # Another thread's call cuts the header's line in two.
            self.line(tid, 'pwrite64(%d, "%s", 24, %d <unfinished ...>' %
                      (fd, _hex(hdr), off))
            self.line(100, "close(30) = 0")
            self.line(tid, "<... pwrite64 resumed>) = 24")
        else:
            self.line(tid, 'pwrite64(%d, "%s", 24, %d) = 24' %
                      (fd, _hex(hdr), off))
        self.line(tid, 'pwrite64(%d, "%s", %d, %d) = %d' %
                  (fd, _hex(data), len(data), off + 24, len(data)))

    def accept(self, fd=14, tid=100):
        self.line(tid, 'accept4(13, {sa_family=AF_INET}, [16], '
                  'SOCK_NONBLOCK) = %d' % fd)

    def answer(self, mid, fd=14, tid=100, unfinished=False):
        body = b'{"id":"%s","status":"queued"}' % mid.encode()
        resp = (b"HTTP/1.1 202 Accepted\r\nContent-Length: %d\r\n\r\n" %
                len(body)) + body
        head = 'writev(%d, [{iov_base="%s", iov_len=%d}], 1' % (
            fd, _hex(resp), len(resp))
        if unfinished:
            self.line(tid, head + " <unfinished ...>")
            return lambda: self.line(tid, "<... writev resumed>) = %d" %
                                     len(resp))
        self.line(tid, head + ") = %d" % len(resp))
        return None


def _verdict(log, ids=None):
    return ft.check(ft.Trace(log.lines, WAL), ids)


def _committed(mid, sync):
    log = _Log()
    log.open_wal()
    log.accept()
    log.frame(32, 2, 0, b"row " + mid.encode() + bytes(40))
    log.frame(32 + 24 + 48, 3, 3, bytes(48))
    if sync == "before":
        log.line(101, "fdatasync(7) = 0")
    return log


def test_checker_passes_a_flush_before_the_answer():
    log = _committed("MSGA", "before")
    log.answer("MSGA")
    assert _verdict(log, ["MSGA"]) == []


def test_checker_fails_without_a_flush():
    log = _committed("MSGA", None)
    log.answer("MSGA")
    bad = _verdict(log)
    assert len(bad) == 1 and "no fsync/fdatasync" in bad[0], bad


def test_checker_counts_a_flush_only_once_it_returned():
    log = _committed("MSGA", None)
    log.line(101, "fdatasync(7 <unfinished ...>")
    done = log.answer("MSGA", unfinished=True)
    log.line(101, "<... fdatasync resumed>) = 0")
    done()
    bad = _verdict(log)
    assert len(bad) == 1 and "no fsync/fdatasync" in bad[0], bad


def test_checker_ignores_a_failed_flush_and_other_files():
    log = _committed("MSGA", None)
    log.line(101, "fdatasync(7) = -1 EIO (Input/output error)")
    log.line(101, "fsync(8) = 0")
    log.answer("MSGA")
    assert len(_verdict(log)) == 1


def test_checker_wants_the_flush_after_the_commit_frame():
    log = _Log()
    log.open_wal()
    log.accept()
    log.frame(32, 2, 0, b"row MSGA" + bytes(40))
    log.line(101, "fdatasync(7) = 0")  # mid-transaction: covers too little
    log.frame(32 + 24 + 48, 3, 3, bytes(48))
    log.answer("MSGA")
    bad = _verdict(log)
    assert len(bad) == 1 and "commit frame" in bad[0], bad


def test_checker_reads_a_split_commit_frame():
    log = _Log()
    log.open_wal()
    log.accept()
    log.frame(32, 2, 0, b"row MSGA" + bytes(40))
    log.line(101, "fdatasync(7) = 0")  # mid-transaction: covers too little
    log.frame(32 + 24 + 48, 3, 3, bytes(48), split=True)
    log.answer("MSGA")
    bad = _verdict(log)
    assert len(bad) == 1 and "commit frame" in bad[0], bad


def test_checker_fails_an_answer_for_a_message_never_written():
    log = _committed("MSGA", "before")
    log.answer("MSGB")
    bad = _verdict(log)
    assert len(bad) == 1 and "never written" in bad[0], bad


def test_checker_refuses_a_trace_missing_an_acknowledged_id():
    log = _committed("MSGA", "before")
    log.answer("MSGA")
    with pytest.raises(ft.TraceError):
        _verdict(log, ["MSGA", "MSGC"])
