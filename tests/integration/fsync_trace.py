"""Reads an `strace -f -tt -xx` log of `shivneri serve` and checks that no
HTTP 202 left the server before the write-ahead log that holds its message
was flushed to disk.

Why a trace: every crash test kills processes, and the page cache survives
a killed process, so a store that never calls fsync passes them all.  Only
the order of system calls shows whether an acknowledgement waited for the
flush.  The store commits on its own writer thread (pwrite64 of WAL frames,
then fdatasync) and the loop thread writes the 202 (writev on the client
socket), so the trace interleaves threads; a system call that another
thread interrupts in the log is split into an `<unfinished ...>` line and
a later `<... NAME resumed>` line.

Order is the order of lines, not of timestamps.  strace prints a call's
entry when the thread stops on entry and its result when it stops on
return, and a stopped thread does not run until strace has printed that
stop; so when a flush returned before the loop thread was told to answer,
the flush's return line precedes the answer's entry line.  A flush counts
only from the line on which it returned 0.

What is checked, per 202 (the answer's first byte being written):
  - its body names an id X, and the WAL received a frame holding X (the
    id is stored as text in the row) before the answer began;
  - the transaction that carried X ended (the first commit frame written
    at or after X's first frame) before the answer began;
  - a flush (fsync or fdatasync) of the WAL that started after that commit
    frame was written returned 0 before the answer began.
A flush is matched to the WAL by the path its descriptor was opened with
(openat), since any descriptor of the file flushes the same inode; the
descriptor tables follow clone (CLONE_FILES shares one), accept, dup and
close.  Answers are read from each accepted socket's byte stream, so one
written in several pieces is still one answer.

Run by hand on a kept trace:
    python3 fsync_trace.py TRACE DATA_DIR
"""

import json
import os
import re
import sys

SYSCALLS = ("?open,openat,?creat,close,?accept,accept4,dup,?dup2,dup3,"
            "write,writev,pwrite64,?pwritev,?pwritev2,sendto,sendmsg,"
            "fsync,fdatasync,?clone,?clone3,?fork,?vfork")

_LINE = re.compile(r"^(\d+)\s+(\d\d:\d\d:\d\d\.\d+)\s+(.*)$")
_CALL = re.compile(r"^([a-z0-9_]+)\((.*)$")
_RESUMED = re.compile(r"^<\.\.\. ([a-z0-9_]+) resumed>(.*)$")
_RESULT = re.compile(r"\)\s+=\s+(-?\d+|0x[0-9a-f]+|\?)(?:\s.*)?$")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')
_IOV = re.compile(r'iov_base="((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')
_FIRST_INT = re.compile(r"^\s*(-?\d+)")
_PWRITE_TAIL = re.compile(r'"(?:\.\.\.)?,\s*(\d+),\s*(\d+)\s*\)\s*=')

_WRITES = ("write", "writev", "pwrite64", "pwritev", "pwritev2", "sendto",
           "sendmsg")
_SYNCS = ("fsync", "fdatasync")
_OPENS = ("open", "openat", "creat")
_ACCEPTS = ("accept", "accept4")
_DUPS = ("dup", "dup2", "dup3")
_CLONES = ("clone", "clone3", "fork", "vfork")


class TraceError(Exception):
    """The trace cannot be read as expected: the check cannot be made."""


class Call:
    """One completed system call: `start` is the line of its entry, `end`
    the line of its return (the same line when it was not interrupted)."""

    __slots__ = ("tid", "name", "args", "ret", "start", "end", "t_start",
                 "t_end")

    def __init__(self, tid, name, args, ret, start, end, t_start, t_end):
        self.tid = tid
        self.name = name
        self.args = args
        self.ret = ret
        self.start = start
        self.end = end
        self.t_start = t_start
        self.t_end = t_end

    def where(self):
        return "line %d (%s, tid %d)" % (self.start, self.t_start, self.tid)


def _unhex(s):
    return bytes.fromhex(s.replace("\\x", ""))


def _ret(text):
    m = _RESULT.search(text)
    if m is None or m.group(1) == "?":
        return None
    return int(m.group(1), 0)


def parse_calls(lines):
    """Yields Calls in the order of their return lines, joining the
    unfinished and resumed halves of each call per thread.  A call with no
    return (the process died in it) is dropped."""
    pending = {}
    for lineno, raw in enumerate(lines, 1):
        m = _LINE.match(raw.rstrip("\n"))
        if m is None:
            continue
        tid, t, rest = int(m.group(1)), m.group(2), m.group(3)
        r = _RESUMED.match(rest)
        if r is not None:
            p = pending.pop(tid, None)
            if p is None or p[0] != r.group(1):
                continue
            name, args, start, t_start = p
            text = args + r.group(2)
            yield Call(tid, name, text, _ret(text), start, lineno, t_start,
                       t)
            continue
        c = _CALL.match(rest)
        if c is None:
            continue  # signals, exits
        name, args = c.group(1), c.group(2)
        if args.endswith("<unfinished ...>"):
            pending[tid] = (name, args[:-len("<unfinished ...>")], lineno, t)
            continue
        yield Call(tid, name, args, _ret(args), lineno, lineno, t, t)


def _buffer(call):
    """The bytes a write call passed, cut to what it wrote; raises
    TraceError when strace truncated them (-s too small)."""
    if call.name in ("writev", "sendmsg", "pwritev", "pwritev2"):
        parts = _IOV.findall(call.args)
    else:
        m = _STRING.search(call.args)
        parts = [m.groups()] if m else []
    data = b""
    for hexs, cut in parts:
        if cut:
            raise TraceError("%s at %s was truncated by strace: raise -s" %
                             (call.name, call.where()))
        data += _unhex(hexs)
    if call.ret is not None and call.ret >= 0:
        data = data[:call.ret]
    return data


class _Stream:
    """The bytes the server wrote on one accepted connection, with the call
    that wrote each piece."""

    def __init__(self):
        self.data = bytearray()
        self.marks = []  # (offset of the piece, Call)

    def add(self, data, call):
        if data:
            self.marks.append((len(self.data), call))
            self.data += data

    def call_at(self, off):
        found = None
        for start, call in self.marks:
            if start > off:
                break
            found = call
        return found


def _responses(stream):
    """(status, body, call that wrote its first byte) of each HTTP answer
    in a connection's stream."""
    out = []
    data = bytes(stream.data)
    pos = 0
    while pos < len(data):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0 or not data.startswith(b"HTTP/", pos):
            break
        head = data[pos:head_end].decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        length = 0
        for h in head[1:]:
            k, _, v = h.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        body = data[head_end + 4:head_end + 4 + length]
        out.append((status, body, stream.call_at(pos)))
        pos = head_end + 4 + length
    return out


class Trace:
    """What the checker needs from a trace: the WAL's writes and flushes,
    and each answer with the call that began it."""

    def __init__(self, lines, wal_path):
        self.wal_path = wal_path
        self.wal_writes = []  # (Call, offset, bytes)
        self.wal_syncs = []  # Calls that returned 0
        self.answers = []  # (status, body, Call)
        self.saw_wal_open = False
        self._group = {}  # tid -> key of its descriptor table
        self._tables = {}  # key -> {fd: path or a _Stream}
        self._streams = []
        calls = list(parse_calls(lines))
        # Threads are known from clone's return, which strace may print
        # after the new thread's first calls: map them all first.
        for c in calls:
            self._clone(c)
        for c in sorted(calls, key=lambda c: c.end):
            self._step(c)
        for s in self._streams:
            self.answers += _responses(s)

    def _clone(self, c):
        if c.name not in _CLONES or c.ret is None or c.ret <= 0:
            return
        parent = self._group.setdefault(c.tid, c.tid)
        if "CLONE_FILES" in c.args or c.name == "vfork":
            self._group[c.ret] = parent
        else:
            self._group[c.ret] = c.ret
            self._tables[c.ret] = dict(self._tables.get(parent, {}))

    def _table(self, tid):
        key = self._group.setdefault(tid, tid)
        return self._tables.setdefault(key, {})

    def _step(self, c):
        table = self._table(c.tid)
        fd_m = _FIRST_INT.match(c.args)
        fd = int(fd_m.group(1)) if fd_m else None
        ok = c.ret is not None and c.ret >= 0
        if c.name in _OPENS and ok:
            m = _STRING.search(c.args)
            path = _unhex(m.group(1)).decode("utf-8", "replace") if m else ""
            table[c.ret] = path
            if path == self.wal_path:
                self.saw_wal_open = True
        elif c.name in _ACCEPTS and ok:
            s = _Stream()
            self._streams.append(s)
            table[c.ret] = s
        elif c.name in _DUPS and ok and fd in table:
            table[c.ret] = table[fd]
        elif c.name == "close" and fd is not None:
            table.pop(fd, None)
        elif c.name in _SYNCS and c.ret == 0:
            if table.get(fd) == self.wal_path:
                self.wal_syncs.append(c)
        elif c.name in _WRITES and ok:
            target = table.get(fd)
            if target == self.wal_path:
                off = None
                if c.name == "pwrite64":
                    m = _PWRITE_TAIL.search(c.args)
                    off = int(m.group(2)) if m else None
                self.wal_writes.append((c, off, _buffer(c)))
            elif isinstance(target, _Stream):
                target.add(_buffer(c), c)


def commit_frames(wal_writes):
    """The indexes in wal_writes of the page writes that end a transaction.

    SQLite writes a frame as a 24-byte header and then the page, at the
    offset just after it; bytes 4-7 of the header are the database size
    after the commit, non-zero only on a transaction's last frame."""
    headers = {}
    commits = set()
    for i, (c, off, data) in enumerate(wal_writes):
        if off is None:
            continue
        if len(data) == 24:
            headers[off + 24] = data
        elif off in headers:
            if int.from_bytes(headers.pop(off)[4:8], "big") != 0:
                commits.add(i)
    return commits


def check(trace, ids=None):
    """Returns a list of violations (strings); empty when every 202 in the
    trace waited for a flush of the WAL covering its message.  ids: the ids
    the client saw acknowledged; each must be among the trace's 202s, so a
    trace the checker misreads cannot pass by finding nothing."""
    if not trace.saw_wal_open:
        raise TraceError("the trace never opens %s: is the store in WAL "
                         "mode, and was the server traced from its start?"
                         % trace.wal_path)
    acks = {}
    for status, body, call in trace.answers:
        if status != 202:
            continue
        try:
            mid = json.loads(body.decode("utf-8"))["id"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise TraceError("202 at %s has no JSON id: %r" %
                             (call.where(), body[:200]))
        acks.setdefault(mid, call)
    if ids is not None:
        missing = sorted(set(ids) - set(acks))
        if missing:
            raise TraceError("%d acknowledged ids have no 202 in the trace, "
                             "e.g. %s" % (len(missing), missing[:3]))
    commits = commit_frames(trace.wal_writes)
    bad = []
    for mid, ack in sorted(acks.items(), key=lambda kv: kv[1].start):
        why = _check_one(trace, commits, mid.encode("ascii"), ack)
        if why:
            bad.append("202 for %s written at %s: %s" %
                       (mid, ack.where(), why))
    return bad


def _check_one(trace, commits, needle, ack):
    first = None
    for i, (c, _, data) in enumerate(trace.wal_writes):
        if c.end < ack.start and needle in data:
            first = i
            break
    if first is None:
        return "its message was never written to the WAL before it"
    covered = trace.wal_writes[first][0]
    what = "its row's WAL write at %s" % covered.where()
    # Without recognisable frame headers (a SQLite that writes a frame in
    # one call) the row's own write is the best end of its transaction.
    if commits:
        end = min((i for i in commits if i >= first), default=None)
        if end is None or trace.wal_writes[end][0].end >= ack.start:
            return "%s was not followed by a commit frame before it" % what
        covered = trace.wal_writes[end][0]
        what = "its transaction's commit frame at %s" % covered.where()
    for s in trace.wal_syncs:
        if s.start > covered.end and s.end < ack.start:
            return None
    last = [s for s in trace.wal_syncs if s.end < ack.start]
    return ("no fsync/fdatasync of the WAL returned between %s and the "
            "202 (last WAL flush before the 202: %s)" %
            (what, last[-1].where() if last else "none"))


def check_file(path, wal_path, ids=None):
    with open(path, encoding="ascii", errors="replace") as f:
        trace = Trace(f, wal_path)
    return trace, check(trace, ids)


def main(argv):
    if len(argv) != 3:
        print("usage: fsync_trace.py TRACE DATA_DIR", file=sys.stderr)
        return 2
    wal = os.path.join(os.path.abspath(argv[2]), "shivneri.db-wal")
    trace, bad = check_file(argv[1], wal)
    n = sum(1 for a in trace.answers if a[0] == 202)
    print("%d answers (%d of them 202), %d WAL writes, %d WAL flushes" %
          (len(trace.answers), n, len(trace.wal_writes),
           len(trace.wal_syncs)))
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
