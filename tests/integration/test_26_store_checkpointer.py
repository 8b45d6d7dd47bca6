"""WAL checkpoints run off the store's writer thread.

SQLite's automatic checkpoint ran inside the commit that crossed its
threshold, on the writer: that commit and every operation queued behind it
waited while the checkpoint copied pages and flushed the database file.
Now a checkpointer thread with its own connection does it, woken past 250
WAL frames; the writer checkpoints only past 4000 (a bound on the WAL that
this test's traffic stays under).

How it is seen: the server runs under `strace -f` (as in test_24) and
takes a few hundred messages, enough for several checkpoints; the trace
must show flushes of the database file (a checkpoint's last step) made
while the traffic ran, none of them by the writer thread (the thread that
wrote the WAL's commit frames), and a flush of the WAL before each 202
still (test_24's checker).  Shown to fail on the code before the
checkpointer (6fc6cf0): "the writer flushed the database file 3 times".
"""

import os
import shutil
import signal
from collections import Counter

import pytest

import fsync_trace as ft
import shivneri_harness as h
import test_24_fsync_before_ack as t24

MESSAGES = 400


class _DbSyncs(ft.Trace):
    """test_24's trace reader, also keeping the flushes of the database
    file (not its WAL) with the thread that made each."""

    def __init__(self, lines, wal_path, db_path):
        self.db_path = db_path
        self.db_syncs = []
        super().__init__(lines, wal_path)

    def _step(self, c):
        if c.name in ("fsync", "fdatasync") and c.ret == 0:
            fd = ft._FIRST_INT.match(c.args)
            if fd and self._table(c.tid).get(int(fd.group(1))) == \
                    self.db_path:
                self.db_syncs.append(c)
        super()._step(c)


def test_checkpoints_run_off_the_writer(make_cluster):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (scripts/install-deps.sh "
                    "installs it)")
    c = make_cluster(providers=())
    trace_path = os.path.join(c.dir, "serve.strace")
    tracer, server_pid = t24._start_traced_server(c, trace_path)

    # 2 KB messages, a few clients at a time: several hundred WAL frames.
    ids = c.submit_many(MESSAGES, threads=4)
    os.kill(server_pid, signal.SIGTERM)
    rc = tracer.wait_exit(120)
    assert rc == 0, "server under strace exited with %s:\n%s" % (
        rc, h.tail(tracer.log_path, 30))

    wal = os.path.join(c.data_dir, "shivneri.db-wal")
    db = os.path.join(c.data_dir, "shivneri.db")
    with open(trace_path, encoding="utf-8", errors="replace") as f:
        trace = _DbSyncs(f, wal, db)
    commits = ft.commit_frames(trace.wal_writes)
    assert commits, "no WAL commit frame recognised in %s" % trace_path
    # The writer: the thread that wrote most commit frames (opening and
    # recovery write a few on the main thread first).
    writer = Counter(call.tid for call, _off, _buf in trace.wal_writes
                     ).most_common(1)[0][0]
    assert writer != server_pid
    # Flushes of the database file while the traffic ran: before the last
    # commit frame (the close checkpoints on the main thread afterwards).
    last = max(call.end for call, _off, _buf in trace.wal_writes)
    during = [s for s in trace.db_syncs if s.end < last]
    by_writer = [s for s in during if s.tid == writer]
    assert not by_writer, (
        "the writer flushed the database file %d times (%s): checkpoints "
        "on the writer's commits" % (len(by_writer), by_writer[0].where()))
    others = [s for s in during if s.tid not in (writer, server_pid)]
    assert others, ("no checkpoint ran during %d messages (trace: %s)" %
                    (MESSAGES, trace_path))

    # The checkpointer changes nothing of the acknowledgement's promise.
    _trace, bad = ft.check_file(trace_path, wal, ids)
    assert not bad, "\n  ".join(bad[:5])
