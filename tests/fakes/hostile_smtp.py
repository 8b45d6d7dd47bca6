"""An SMTP smarthost that misbehaves on purpose, on 127.0.0.1, for
tests/integration/test_97_provider_hostile.py.  It speaks SMTP by hand
over raw sockets (aiosmtpd, as smtp_fake.py uses, keeps to the protocol,
and the point here is to break it), one thread a connection, no TLS, no
AUTH, no PIPELINING.

`mode` says how a transaction goes:

- "ok": 220, EHLO, MAIL, RCPT, DATA 354, the data to its dot, then
  "250 2.0.0 Ok: queued as Q<n>"; the session stays for the next one;
- "early_250": DATA is answered "354" and at once "250 ... queued as
  EARLY<n>", before any of the data is read; then nothing more is read (the
  receive buffer is made small, so a large message stalls part way);
- "idle_chatter": as "ok", then, while the session waits for the next
  transaction, a continuation line "250-still here" every 50 ms, and
  never a final reply: a reply nobody asked for, which must not be taken
  as the answer to the next MAIL;
- "drop_after_dot": the data is read to its dot, then the connection is
  closed with no reply (the smarthost may have queued it);
- "no_verdict_after_dot": the data is read to its dot, then answered
  "354" again, which is no verdict, and the connection closed;
- "no_greeting": the connection is accepted and nothing is ever said;
- "starttls_broken": EHLO offers STARTTLS, which is answered "220"; the
  ClientHello is answered with bytes that are no TLS record, then the
  close;
- "ehlo_refused_late": EHLO is answered with extensions on its "250-"
  lines and a final "550" (the code changes inside the reply), so the
  client falls back to HELO, which offers none: a MAIL with parameters
  is refused "555" as a HELO-only server would, one without goes on;
- "ehlo_flood": EHLO is answered with "250-" lines of 1,000 bytes, as
  fast as the client reads them, and never a final line (`flooded` counts
  the bytes sent).

`messages` holds the data of each transaction read to its dot;
`mails` counts the MAIL commands; `connections` counts the accepted
connections.  Every socket has a timeout, so a stuck client never holds a
thread for ever; stop() closes everything.
"""

import socket
import time

from listener import Listener


class HostileSmtp(Listener):
    def __init__(self, mode="ok"):
        super().__init__()
        self.mode = mode
        self.messages = []
        self.mails = 0
        self.flooded = 0
        if mode == "early_250":
            # Inherited by accepted sockets: the client's data stalls soon.
            self.rcvbuf = 4096

    def _serve(self, conn, n):
        conn.settimeout(0.05)
        s = _Session(self, conn, n)
        try:
            s.run()
        except (OSError, ValueError):
            pass
        finally:
            conn.close()


class _Session:
    def __init__(self, fake, conn, n):
        self.fake = fake
        self.conn = conn
        self.n = n
        self.buf = b""
        self.deadline = time.monotonic() + 30

    def line(self, chatter=False):
        """The next line from the client; None at EOF or stop.  With
        chatter, a continuation line goes out every 50 ms meanwhile."""
        while b"\n" not in self.buf:
            if self.fake.stopping or time.monotonic() > self.deadline:
                return None
            try:
                data = self.conn.recv(65536)
            except socket.timeout:
                if chatter:
                    self.conn.sendall(b"250-still here\r\n")
                continue
            if not data:
                return None
            self.buf += data
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r")

    def say(self, text):
        self.conn.sendall(text.encode() + b"\r\n")

    def idle(self):
        while not self.fake.stopping and time.monotonic() < self.deadline:
            time.sleep(0.05)

    def run(self):
        mode = self.fake.mode
        if mode == "no_greeting":
            return self.idle()
        self.say("220 hostile.test ESMTP")
        chatter = False
        while True:
            ln = self.line(chatter)
            if ln is None:
                return
            verb = ln.split(b" ", 1)[0].split(b":", 1)[0].upper()
            if verb == b"EHLO" and mode == "ehlo_flood":
                return self.flood()
            if verb == b"EHLO" and mode == "ehlo_refused_late":
                self.say("250-hostile.test\r\n250-PIPELINING\r\n"
                         "250-8BITMIME\r\n250-SMTPUTF8\r\n"
                         "250-SIZE 100000000\r\n550 5.5.1 no EHLO after all")
            elif (verb == b"MAIL" and mode == "ehlo_refused_late" and
                    ln.rstrip().endswith(b">") is False):
                with self.fake.lock:
                    self.fake.mails += 1
                self.say("555 5.5.4 MAIL parameters not recognized")
            elif verb == b"EHLO" and mode == "starttls_broken":
                self.say("250-hostile.test\r\n250 STARTTLS")
            elif verb == b"STARTTLS":
                self.say("220 2.0.0 Ready to start TLS")
                # After the ClientHello, so that the handshake reads it.
                self.conn.settimeout(5)
                self.conn.recv(65536)
                self.conn.sendall(b"this is no TLS record\r\n")
                return
            elif verb == b"EHLO":
                self.say("250-hostile.test\r\n250 SIZE 100000000")
            elif verb == b"HELO":
                self.say("250 hostile.test")
            elif verb == b"MAIL":
                chatter = False
                with self.fake.lock:
                    self.fake.mails += 1
                self.say("250 2.1.0 Ok")
            elif verb == b"RCPT":
                self.say("250 2.1.5 Ok")
            elif verb == b"DATA":
                self.say("354 End data with <CR><LF>.<CR><LF>")
                if mode == "early_250":
                    self.say("250 2.0.0 Ok: queued as EARLY%d" % self.n)
                    return self.idle()
                if not self.data():
                    return
                chatter = mode == "idle_chatter"
            elif verb == b"QUIT":
                self.say("221 2.0.0 Bye")
                return
            else:
                self.say("250 Ok")

    def flood(self):
        line = b"250-" + b"x" * 994 + b"\r\n"
        chunk = line * 64
        self.conn.settimeout(1)
        while not self.fake.stopping and time.monotonic() < self.deadline:
            try:
                self.conn.sendall(chunk)
            except socket.timeout:
                continue
            with self.fake.lock:
                self.fake.flooded += len(chunk)

    def data(self):
        lines = []
        while True:
            ln = self.line()
            if ln is None:
                return False
            if ln == b".":
                break
            lines.append(ln[1:] if ln.startswith(b".") else ln)
        with self.fake.lock:
            self.fake.messages.append(b"\r\n".join(lines))
            k = len(self.fake.messages)
        if self.fake.mode == "drop_after_dot":
            return False
        if self.fake.mode == "no_verdict_after_dot":
            self.say("354 go on")
            return False
        self.say("250 2.0.0 Ok: queued as Q%d" % k)
        return True
