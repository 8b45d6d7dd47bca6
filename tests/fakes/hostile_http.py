"""A provider API that misbehaves at the HTTP level, on 127.0.0.1, for
tests/integration/test_97_provider_hostile.py.  It speaks HTTP/1.1 by
hand over raw sockets (no http.server: the misbehaviour is in the bytes
and the timing, which a framework would tidy up) and answers any POST as
SendGrid does when it takes a message: 202, an empty body and an
X-Message-Id header.

`mode` says what a request gets:

- "ok": the answer, and the connection is kept open for the next one;
- "drop_reused": a connection's first request gets the answer and stays
  open; any later request on it is read whole, then the connection is
  closed with no answer: a provider (or a proxy) that took the request
  and died before it answered, just as the client reused a kept
  connection;
- "redirect": 307 to `redirect_to` + the same path (another host, which
  must never see our key: redirects are not followed);
- "echo_key": the answer's X-Message-Id is the request's Authorization
  header as it came (a broken proxy, or a provider that reflects it): the
  key must not become the message's provider id.

`requests` lists every request read whole: (connection number, the
request's index on its connection, its body).  `connections` counts the
accepted connections.  Every socket has a timeout, so a stuck client
never holds a thread for ever; stop() closes everything.
"""

from listener import Listener


class HostileHttp(Listener):
    conn_timeout = 10

    def __init__(self, mode="ok", redirect_to=None):
        super().__init__()
        self.mode = mode
        self.redirect_to = redirect_to
        self.requests = []

    @property
    def base_url(self):
        return "http://127.0.0.1:%d" % self.port

    def bodies(self):
        with self.lock:
            return [r[2] for r in self.requests]

    @staticmethod
    def _read_request(conn, buf):
        """(head, body, rest of buf) of the next request, or None at EOF;
        the head at most 64 KB, the body as Content-Length says."""
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
                length = int(v.strip())
        while len(buf) < length:
            data = conn.recv(65536)
            if not data:
                return None
            buf += data
        return head, buf[:length], buf[length:]

    @staticmethod
    def _header(head, name):
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == name:
                return v.strip()
        return None

    def _serve(self, conn, n):
        buf = b""
        i = 0
        try:
            while not self.stopping:
                got = self._read_request(conn, buf)
                if got is None:
                    return
                head, body, buf = got
                with self.lock:
                    self.requests.append((n, i, body))
                if self.mode == "drop_reused" and i > 0:
                    return  # taken, and no answer
                if self.mode == "redirect":
                    path = head.split(b"\r\n")[0].split(b" ")[1]
                    conn.sendall(b"HTTP/1.1 307 Temporary Redirect\r\n"
                                 b"Location: %s%s\r\n"
                                 b"Content-Length: 0\r\n\r\n" %
                                 (self.redirect_to.encode(), path))
                    i += 1
                    continue
                mid = b"hostile-%d-%d" % (n, i)
                if self.mode == "echo_key":
                    mid = self._header(head, b"authorization") or mid
                conn.sendall(b"HTTP/1.1 202 Accepted\r\n"
                             b"X-Message-Id: %s\r\n"
                             b"Content-Length: 0\r\n\r\n" % mid)
                i += 1
        except (OSError, ValueError):
            return
        finally:
            conn.close()
