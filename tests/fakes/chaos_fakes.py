"""The provider stand-ins of the chaos run (tests/integration/chaos.py):
ChaosHttp, a SendGrid-shaped API, and ChaosSmtp, a smarthost, both on
127.0.0.1, by hand over raw sockets (the faults are in the bytes and the
timing, which a framework would tidy up), each with a mode the run turns
at random, and each keeping its own record of what it read whole and in
which mode, so that the run can tell what a real provider may have kept.

Lines reads CRLF lines and SMTP replies; the run's pipelined SMTP client
uses it too.  Every socket has a timeout and every loop a bound.
"""

import re
import socket
import struct
import time

from listener import Listener

TAG_RE = re.compile(rb"CHAOS-\d+-\d+")
HTTP_FAULTS = ("503", "429", "blackhole", "cut", "reset", "close")
# Modes in which a request read whole may have been kept by a provider.
KEEPS = ("ok", "blackhole", "cut", "reset", "close")
BLACKHOLE_MAX_S = 30


class _Stand(Listener):
    """What both stand-ins share beyond the listener: a mode, the record
    of what was read whole, and the forgetting of closed connections."""

    conn_timeout = BLACKHOLE_MAX_S

    def __init__(self):
        super().__init__()
        self.mode = "ok"
        self.received = []

    def _forget(self, conn):
        """Closes conn and drops it from conns (a long run opens many)."""
        conn.close()
        with self.lock:
            if conn in self.conns:
                self.conns.remove(conn)

    def kept(self):
        """{tag: copies} of what a real provider may have kept."""
        out = {}
        with self.lock:
            for tag, mode in self.received:
                if mode in self.KEEPS:
                    out[tag] = out.get(tag, 0) + 1
        return out


class ChaosHttp(_Stand):
    """A SendGrid-shaped provider API on 127.0.0.1, by hand over raw
    sockets (the faults are in the bytes and the timing), whose mode says
    what the next request gets:

    ok: 202 with X-Message-Id, the connection kept; 503, 429 (with
    Retry-After: 1): refused, nothing kept; blackhole: read whole, never
    answered (held until the client closes, BLACKHOLE_MAX_S at most);
    cut: read whole, then closed with no answer; reset: the same with a
    TCP RST; close: the 202, then the connection closed.

    `received` lists (tag, mode) for every request read whole; kept()
    counts the tags of those a real provider may have kept.
    """

    KEEPS = KEEPS

    def __init__(self):
        super().__init__()
        self.n = 0

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    def _serve(self, conn, n):
        buf = b""
        try:
            while not self.stopping:
                got = _read_request(conn, buf)
                if got is None:
                    return
                body, buf = got
                mode = self.mode
                tags = set(TAG_RE.findall(body))
                tag = tags.pop().decode() if len(tags) == 1 else None
                with self.lock:
                    self.received.append((tag, mode))
                    self.n += 1
                    mid = b"chaos-%d" % self.n
                if mode == "503":
                    conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\n"
                                 b"Content-Length: 0\r\n\r\n")
                    continue
                if mode == "429":
                    conn.sendall(b"HTTP/1.1 429 Too Many Requests\r\n"
                                 b"Retry-After: 1\r\n"
                                 b"Content-Length: 0\r\n\r\n")
                    continue
                if mode == "blackhole":
                    _hold(conn, BLACKHOLE_MAX_S)
                    return
                if mode == "cut":
                    return
                if mode == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
                    return
                conn.sendall(b"HTTP/1.1 202 Accepted\r\n"
                             b"X-Message-Id: %s\r\n"
                             b"Content-Length: 0\r\n\r\n" % mid)
                if mode == "close":
                    return
        except (OSError, ValueError):
            return
        finally:
            self._forget(conn)


def _hold(conn, seconds):
    """Reads and drops whatever comes until the peer closes or seconds."""
    deadline = time.monotonic() + seconds
    conn.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def _read_request(conn, buf):
    """(body, rest of buf) of the next request, or None at EOF; the head
    at most 64 KB, the body as Content-Length says (at most 16 MB)."""
    while b"\r\n\r\n" not in buf:
        if len(buf) > 65536:
            return None
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = min(int(v.strip()), 1 << 24)
    while len(buf) < length:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    return buf[:length], buf[length:]


SMTP_FAULTS = ("451", "421", "drop", "blackhole", "cut_data", "close")
# Modes in which a message read to its dot may have been kept.
SMTP_KEEPS = ("ok", "drop", "blackhole", "close")


class ChaosSmtp(_Stand):
    """A smarthost on 127.0.0.1, by hand over raw sockets, one thread a
    connection, whose mode (read at each step) says what happens:

    ok: every command 250, the data to its dot, then "250 ... queued";
    451: the data to its dot, then 451 (refused, nothing kept); 421: the
    next command (or the greeting) gets 421 and the connection closes;
    drop: the data to its dot, then the connection closed with no reply;
    blackhole: the data to its dot, then no reply (held until the client
    goes, BLACKHOLE_MAX_S at most); cut_data: the connection closed
    half-way through the data (nothing kept); close: the 250, then the
    connection closed.

    `received` lists (tag, mode) for every message read to its dot, and
    `heads` (tag, its first 40 lines) for each.
    """

    KEEPS = SMTP_KEEPS

    def __init__(self):
        super().__init__()
        self.heads = []

    def _serve(self, conn, n):
        r = Lines(conn)
        try:
            if self.mode == "421":
                conn.sendall(b"421 4.3.2 chaos: closing\r\n")
                return
            conn.sendall(b"220 chaos.test ESMTP\r\n")
            for _ in range(100000):
                if self.stopping:
                    return
                ln = r.line()
                verb = ln.split(b" ", 1)[0].split(b":", 1)[0].upper()
                if self.mode == "421":
                    conn.sendall(b"421 4.3.2 chaos: closing\r\n")
                    return
                if verb == b"EHLO":
                    conn.sendall(b"250-chaos.test\r\n250 SIZE 100000000"
                                 b"\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    if not self._data(conn, r):
                        return
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    conn.sendall(b"250 2.0.0 Ok\r\n")
        except (OSError, ValueError):
            return
        finally:
            self._forget(conn)

    def _data(self, conn, r):
        """Reads the data to its dot and answers as the mode says; False
        when the connection is to close."""
        body = []
        for i in range(1000000):
            ln = r.line()
            if ln == b".":
                break
            if i == 3 and self.mode == "cut_data":
                return False
            body.append(ln)
        mode = self.mode
        tags = set(TAG_RE.findall(b"\n".join(body)))
        tag = tags.pop().decode() if len(tags) == 1 else None
        with self.lock:
            self.received.append((tag, mode))
            self.heads.append((tag, b"\r\n".join(body[:40])))
            n = len(self.received)
        if mode == "451":
            conn.sendall(b"451 4.3.0 chaos: try again later\r\n")
            return True
        if mode == "drop":
            return False
        if mode == "blackhole":
            _hold(conn, BLACKHOLE_MAX_S)
            return False
        conn.sendall(b"250 2.0.0 Ok: queued as C%d\r\n" % n)
        return mode != "close"


class Lines:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def line(self):
        """The next line without its CRLF (at most 64 KB); raises
        ConnectionError at EOF."""
        while b"\n" not in self.buf:
            if len(self.buf) > 65536:
                raise ConnectionError("line too long")
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("closed")
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r")

    def reply(self):
        """(code, text) of the next reply, multi-line ones joined."""
        text = []
        for _ in range(100):
            while b"\r\n" not in self.buf:
                d = self.sock.recv(4096)
                if not d:
                    raise ConnectionError("closed")
                self.buf += d
            line, self.buf = self.buf.split(b"\r\n", 1)
            text.append(line[4:].decode("ascii", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(text)
        raise ConnectionError("reply too long")
