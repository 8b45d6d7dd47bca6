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

make_certs() makes a CA and a server certificate for 127.0.0.1 with the
openssl command in a test's folder: no key is ever committed.
"""

import asyncio
import os
import ssl
import subprocess
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


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

    async def handle_MAIL(self, server, session, envelope, address,
                          options):
        if self.fake.mail_reply:
            return self.fake.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address,
                          options):
        answer = self.fake.refuse_rcpt.get(address)
        if answer:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        f = self.fake
        with f.lock:
            f.received.append({"from": envelope.mail_from,
                               "to": list(envelope.rcpt_tos),
                               "data": bytes(envelope.content),
                               "auth": session.authenticated})
            f.changed.notify_all()
            n = len(f.received)
        if f.hang_data:
            # Never answers: the client's timeout must give up.
            while not f.stopping:
                await asyncio.sleep(0.05)
            return "421 4.3.2 shutting down"
        if f.data_reply:
            return f.data_reply
        return "250 2.0.0 Ok: queued as FAKE%04d" % n


class SmtpFake:
    """One smarthost on 127.0.0.1:port.  tls: "none", "starttls" or
    "implicit" (certs from make_certs required for the last two); with
    password set, AUTH is required and only user/password pass."""

    def __init__(self, port, tls="none", certs=None, user=None,
                 password=None):
        self.port = port
        self.received = []
        self.auth_tries = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.refuse_rcpt = {}
        self.mail_reply = None
        self.data_reply = None
        self.hang_data = False
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
        kw.update(server_kw)
        self.controller = Controller(Handler(self), port=port, **kw)

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
