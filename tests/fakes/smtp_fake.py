"""A local stand-in for an SMTP smarthost, on aiosmtpd (Debian's
python3-aiosmtpd): plain, STARTTLS or implicit TLS, optional AUTH, and
scripted refusals, so that the smtp connector is tested against a real
SMTP server on 127.0.0.1 and never a real provider.

It keeps what each transaction carried: the envelope and the message
bytes exactly as the client sent them, dot-stuffing undone (aiosmtpd with
decode_data=False).  Refusals follow RFC 5321 as a smarthost answers them:
`refuse_rcpt` {address: "550 5.1.1 ..."} at RCPT, `mail_reply` at MAIL,
`data_reply` after the data (the bytes are kept first), and `hang_data`
accepts the data and never answers, until stop().

For concurrency: `hold_data` = (N, seconds) holds each answer to the data
until N transactions wait for theirs at once (then all get 250), or the
seconds pass (451: the client never had N transfers open at once);
`peak_waiting` is the most that waited together.

A hostile smarthost: `flood_mail` = "lines" answers MAIL with endless
"250-" continuation lines, "line" with one endless line and no line end,
never a final reply, until the client goes or stop(); `flooded` counts
the bytes written.

For connection reuse: `connections` counts the client's connections (`closed`, those gone),
`idle_timeout` (seconds) closes a connection idle that long, as smarthosts
do, and `drop_reused` closes the connection, with no reply, at the MAIL of
every transaction after a connection's first (a smarthost that timed out
just as the client's next message began).

Pipelining (RFC 2920): `pipelining` adds PIPELINING to the EHLO answer;
`arrivals` says for each MAIL how the client sent it: "pipelined" (its
RCPTs and DATA had arrived before MAIL was answered), "lockstep" (nothing
after it had) or "partial".  `transcripts` holds, per closed connection,
the first 64 KB the client sent after EHLO (commands and data as sent).
`broken_data` makes a refused recipient still count for DATA, so DATA
gets 354 though every recipient was refused (a broken server).
`drop_reused` = "421" sends 421 before it closes; any other true value
closes with no reply.

Size: `size_limit` (bytes) is announced in EHLO as SIZE and enforced
by aiosmtpd (552 at a MAIL whose SIZE= is over it, and after data over
it); default aiosmtpd's 32 MiB.

SMTPUTF8: `smtputf8` (default, as aiosmtpd's Controller) offers it, and
each received message says whether MAIL carried it; smtputf8=False
refuses a non-ASCII command.  `mails` counts the MAIL commands that reached the
handler.

8BITMIME: offered unless `eightbitmime` is False (a smarthost that takes
7-bit data only); each received message has MAIL's parameters as the
client sent them (`mail_options`: "BODY=8BITMIME", "SIZE=N", ...).

make_certs() makes a CA and a server certificate for 127.0.0.1 with the
openssl command in a test's folder: no key is ever committed.
"""

import asyncio
import os
import ssl
import subprocess
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


def make_certs(folder):
    """Writes ca.pem, server.pem, server.key in folder; returns their
    paths (ca, cert, key)."""
    ca_key = os.path.join(folder, "ca.key")
    ca = os.path.join(folder, "ca.pem")
    key = os.path.join(folder, "server.key")
    csr = os.path.join(folder, "server.csr")
    cert = os.path.join(folder, "server.pem")
    ext = os.path.join(folder, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName = IP:127.0.0.1, DNS:localhost\n"
                "basicConstraints = CA:FALSE\n"
                "keyUsage = digitalSignature, keyEncipherment\n"
                "extendedKeyUsage = serverAuth\n")

    def run(*argv):
        subprocess.run(("openssl",) + argv, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=30)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt",
        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", ca_key,
        "-out", ca, "-days", "2", "-subj", "/CN=shivneri test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
        "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    return ca, cert, key


class Handler:
    def __init__(self, fake):
        self.fake = fake

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        # The 5-argument hook replaces aiosmtpd's own name keeping.
        session.host_name = hostname
        if self.fake.pipelining:
            responses.insert(-1, "250-PIPELINING")
        if not self.fake.eightbitmime:
            responses = [r for r in responses
                         if r[4:].upper() != "8BITMIME"]
            # The last line must stay the "250 " one.
            last = responses[-1]
            responses[-1] = "250 " + last[4:]
        return responses

    async def _arrival(self, server):
        """How the rest of the group stood when MAIL came up: what the
        client had sent beyond it and is not yet read (asyncio's reader
        buffer).  A pipelined group is one write; a moment's grace
        covers a split one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.5
        while True:
            pending = bytes(getattr(server._reader, "_buffer", b""))
            if b"DATA\r\n" in pending.upper():
                return "pipelined"
            if not self.fake.pipelining or loop.time() >= deadline:
                return "partial" if pending else "lockstep"
            await asyncio.sleep(0.005)

    async def handle_MAIL(self, server, session, envelope, address,
                          options):
        done = getattr(session, "fake_mails", 0)
        session.fake_mails = done + 1
        arrival = await self._arrival(server)
        with self.fake.lock:
            self.fake.mails += 1
            self.fake.arrivals.append(arrival)
        if self.fake.drop_reused and done > 0:
            with self.fake.lock:
                self.fake.dropped += 1
            if self.fake.drop_reused == "421":
                server.transport.write(b"421 4.4.2 closing\r\n")
            # A write after close() is discarded: no other reply reaches
            # the client.
            server.transport.close()
            return "421 4.4.2 closing"
        if self.fake.flood_mail:
            return await self._flood(server)
        if self.fake.mail_reply:
            return self.fake.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def _flood(self, server):
        f = self.fake
        unit = (b"250-" + b"x" * 1018 + b"\r\n" if f.flood_mail == "lines"
                else b"x" * 1024)
        chunk = unit * 16
        while not server.transport.is_closing() and not f.stopping:
            # Only as fast as the client reads: no backlog in this process.
            if server.transport.get_write_buffer_size() < len(chunk) * 4:
                server.transport.write(chunk)
                with f.lock:
                    f.flooded += len(chunk)
            await asyncio.sleep(0.001)
        return "421 4.3.0 closing"

    async def handle_RCPT(self, server, session, envelope, address,
                          options):
        answer = self.fake.refuse_rcpt.get(address)
        if answer:
            if self.fake.broken_data:
                envelope.rcpt_tos.append(address)
            return answer
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        f = self.fake
        with f.lock:
            f.received.append({"from": envelope.mail_from,
                               "to": list(envelope.rcpt_tos),
                               "data": bytes(envelope.content),
                               "auth": session.authenticated,
                               "smtputf8": envelope.smtp_utf8,
                               "mail_options": list(envelope.mail_options)})
            f.changed.notify_all()
            f.data_at = time.monotonic()
            n = len(f.received)
        if f.hold_data is not None:
            return await self._hold(f)
        if f.hang_data:
            # Never answers: the client's timeout must give up.
            while not f.stopping:
                await asyncio.sleep(0.05)
            return "421 4.3.2 shutting down"
        if f.data_reply:
            return f.data_reply
        return "250 2.0.0 Ok: queued as FAKE%04d" % n


    async def _hold(self, f):
        # Every session runs on the controller's one asyncio loop: the
        # count needs no lock against the others, only against readers.
        want, seconds = f.hold_data
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        with f.lock:
            f.waiting += 1
            f.peak_waiting = max(f.peak_waiting, f.waiting)
        try:
            while f.peak_waiting < want and not f.stopping:
                if loop.time() >= deadline:
                    return "451 4.3.0 only %d transactions at once" % (
                        f.peak_waiting)
                await asyncio.sleep(0.01)
        finally:
            with f.lock:
                f.waiting -= 1
        return "250 2.0.0 Ok: queued as HELD"


class CountingSMTP(SMTP):
    """Counts the connections that greeted (the controller's own check
    of its listener at start never does), each once though STARTTLS
    makes it greet twice, and those of them closed."""

    def __init__(self, fake, *args, **kw):
        super().__init__(*args, **kw)
        self.fake = fake
        self.fake_counted = False
        self.fake_rx = None

    async def smtp_EHLO(self, hostname):
        if not self.fake_counted:
            self.fake_counted = True
            with self.fake.lock:
                self.fake.connections += 1
        await super().smtp_EHLO(hostname)
        self.fake_rx = bytearray()

    def data_received(self, data):
        # After EHLO: the transaction, as the client wrote it.
        if self.fake_rx is not None and len(self.fake_rx) < 65536:
            self.fake_rx += data[:65536 - len(self.fake_rx)]
        super().data_received(data)

    def _timeout_cb(self):
        # As Postfix at its idle timeout: 421, TLS closed without waiting
        # for the client's close_notify, the socket closed.  aiosmtpd's
        # own would wait for the client's TLS close, which an idle client
        # never sends.
        if self.transport is None:
            return
        self.transport.write(b"421 4.4.2 idle timeout exceeded\r\n")
        self.transport.close()
        if self._original_transport is not None:
            self._original_transport.close()

    def connection_lost(self, error):
        if self.fake_counted:
            with self.fake.lock:
                self.fake.closed += 1
                self.fake.transcripts.append(bytes(self.fake_rx or b""))
                self.fake.closed_at = time.monotonic()
        super().connection_lost(error)


class CountingController(Controller):
    def __init__(self, fake, *args, **kw):
        self.fake = fake
        super().__init__(*args, **kw)

    def factory(self):
        return CountingSMTP(self.fake, self.handler, **self.SMTP_kwargs)


class SmtpFake:
    """One smarthost on 127.0.0.1:port.  tls: "none", "starttls" or
    "implicit" (certs from make_certs required for the last two); with
    password set, AUTH is required and only user/password pass."""

    def __init__(self, port, tls="none", certs=None, user=None,
                 password=None, idle_timeout=None, pipelining=False,
                 smtputf8=True, size_limit=None, eightbitmime=True):
        self.port = port
        self.eightbitmime = eightbitmime
        self.pipelining = pipelining
        self.arrivals = []
        self.transcripts = []
        self.mails = 0
        self.broken_data = False
        self.data_at = None  # time.monotonic() of the last data received
        self.closed_at = None  # and of the last connection closed
        self.connections = 0
        self.dropped = 0
        self.closed = 0
        self.drop_reused = False
        self.received = []
        self.auth_tries = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.refuse_rcpt = {}
        self.mail_reply = None
        self.data_reply = None
        self.hang_data = False
        self.flood_mail = None
        self.flooded = 0
        self.hold_data = None
        self.waiting = 0
        self.peak_waiting = 0
        self.stopping = False
        self.user, self.password = user, password
        ctx = None
        if tls != "none":
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(certs[1], certs[2])
        kw = {"decode_data": False, "hostname": "127.0.0.1",
              "ready_timeout": 10}
        server_kw = {}
        if tls == "starttls":
            server_kw["tls_context"] = ctx
            server_kw["require_starttls"] = True
        if password is not None:
            server_kw["authenticator"] = self._auth
            server_kw["auth_required"] = True
            server_kw["auth_require_tls"] = tls != "none"
        if tls == "implicit":
            kw["ssl_context"] = ctx
        if idle_timeout is not None:
            server_kw["timeout"] = idle_timeout
        server_kw["enable_SMTPUTF8"] = smtputf8
        if size_limit is not None:
            server_kw["data_size_limit"] = size_limit
        kw.update(server_kw)
        self.controller = CountingController(self, Handler(self),
                                             port=port, **kw)

    def _auth(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and
              auth_data.login == self.user.encode() and
              auth_data.password == self.password.encode())
        with self.lock:
            self.auth_tries.append(ok)
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.stopping = True
        try:
            self.controller.stop()
        except Exception:  # noqa: BLE001 - a stopped loop is fine
            pass

    def messages(self):
        with self.lock:
            return list(self.received)
