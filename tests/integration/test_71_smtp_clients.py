"""SMTP submission with real clients that no one here wrote: swaks, msmtp,
curl's SMTP, Python's smtplib, and a real Postfix started by the test with
Shivneri as its relayhost (SASL over STARTTLS, CA-verified where the
client can), each message followed into the maildir of a spawned maildir
provider and through GET /v1/messages/ID.

Two relays per module, both with a certificate from a CA made at test time:
"open" trusts loopback (the embedded default) and has no users file;
"locked" trusts no network (smtp_trusted_networks empty), so only AUTH
(PLAIN or LOGIN, after STARTTLS) lets a client send; it also listens for
implicit TLS (smtps_listen).  A client that is not installed skips its
test (scripts/install-deps.sh installs them all); the Postfix test needs
root.  Passwords are redacted from anything a test prints, and no server
or agent log may contain one.
"""

import base64
import os
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import postfix_fake  # noqa: E402
import smtp_fake  # noqa: E402

USER = "app@relay.test"
PASSWORD = "Sx-71-kestrel-Password-9d4e"
QUEUED = re.compile(r"queued as ([0-9A-HJKMNP-TV-Z]{26})")
CLIENT_TIMEOUT = 20


def redact(text):
    """text without the password in any form a client may print it."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    forms = [PASSWORD,
             base64.b64encode(PASSWORD.encode()).decode(),
             base64.b64encode(("\0%s\0%s" % (USER, PASSWORD)).encode())
             .decode()]
    for f in forms:
        text = text.replace(f, "<redacted>")
    return text


def run(argv, stdin=None, timeout=CLIENT_TIMEOUT):
    """Runs a client; returns (exit code, stdout + stderr redacted)."""
    try:
        p = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT,
                           timeout=h.scaled(timeout))
    except subprocess.TimeoutExpired as e:
        return None, "timed out: " + redact(e.output or b"")
    return p.returncode, redact(p.stdout)


def need(tool):
    if shutil.which(tool) is None:
        pytest.skip("%s is not installed (scripts/install-deps.sh)" % tool)


def message_bytes(mark, frm="Sender <sender@example.com>",
                  to="Rcpt <rcpt@example.net>"):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\n\r\n"
            "Body of %s.\r\n" % (frm, to, mark, mark)).encode()


# ------------------------------------------------------------- relays


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    ca, cert, key = smtp_fake.make_certs(
        str(tmp_path_factory.mktemp("certs")))
    os.chmod(key, 0o600)
    return {"ca": ca, "cert": cert, "key": key}


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    p = subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                       input=PASSWORD.encode(), stdout=subprocess.PIPE,
                       check=True, timeout=30)
    path = str(tmp_path_factory.mktemp("users") / "users")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# users of the relay\n%s:%s\n" %
                (USER, p.stdout.decode().strip()))
    return path


class Relay:
    """A started cluster with its SMTP port (and implicit TLS port, or
    None) and what it offers."""

    def __init__(self, cluster, port, smtps_port=None):
        self.c = cluster
        self.port = port
        self.smtps_port = smtps_port
        self.features = ehlo(port)

    def has(self, ext):
        return ext in self.features

    def need_starttls(self):
        assert self.has("starttls"), sorted(self.features)

    def need_auth(self, ca):
        """AUTH is offered after STARTTLS; returns its mechanisms."""
        self.need_starttls()
        with smtplib.SMTP("127.0.0.1", self.port,
                          timeout=h.scaled(CLIENT_TIMEOUT)) as s:
            s.starttls(context=client_context(ca))
            s.ehlo("client.test")
            assert s.has_extn("auth"), s.esmtp_features
            return s.esmtp_features["auth"].upper().split()


def ehlo(port):
    with smtplib.SMTP("127.0.0.1", port,
                      timeout=h.scaled(CLIENT_TIMEOUT)) as s:
        code, _ = s.ehlo("client.test")
        assert code == 250, code
        return dict(s.esmtp_features)


def client_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = True
    return ctx


def smtp_up(port):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.settimeout(h.scaled(5))
        banner = s.recv(512)
        s.sendall(b"QUIT\r\n")
    return banner.startswith(b"220")


def start_relay(factory, certs, users=None, trusted=None, smtps=False):
    port = h.free_port()
    smtps_port = None
    extra = {"smtp_listen": "127.0.0.1:%d" % port,
             "smtp_tls_cert_file": certs["cert"],
             "smtp_tls_key_file": certs["key"]}
    if smtps:
        smtps_port = h.free_port()
        while smtps_port == port:
            smtps_port = h.free_port()
        extra["smtps_listen"] = "127.0.0.1:%d" % smtps_port
    if users is not None:
        extra["smtp_users_file"] = users
    if trusted is not None:
        extra["smtp_trusted_networks"] = trusted
    c = factory(providers=("a",), spawn=True, server_extra=extra)
    c.start_server()
    h.wait_for(lambda: smtp_up(port), 5, "the SMTP banner on %d" % port)
    c.wait_state("a", "up")
    return Relay(c, port, smtps_port)


@pytest.fixture(scope="module")
def open_relay(module_cluster_factory, certs):
    return start_relay(module_cluster_factory, certs)


@pytest.fixture(scope="module")
def locked_relay(module_cluster_factory, certs, users_file):
    return start_relay(module_cluster_factory, certs, users=users_file,
                       trusted="", smtps=True)


def maildir_with(c, mark):
    """The bytes of the one maildir file holding mark, or None."""
    d = os.path.join(c.maildir("a"), "new")
    found = []
    for name in os.listdir(d) if os.path.isdir(d) else ():
        with open(os.path.join(d, name), "rb") as f:
            data = f.read()
        if mark.encode() in data:
            found.append(data)
    assert len(found) <= 1, "%s delivered %d times" % (mark, len(found))
    return found[0] if found else None


def arrived(relay, mid, mark):
    """mid (the id of the client's 250) is delivered, and its maildir file
    holds mark and Shivneri's Received: header.  (That the providers get
    the envelope, not the headers, is test_70's, with an SMTP stand-in.)"""
    relay.c.wait_delivered([mid], timeout=20)
    data = h.wait_for(lambda: maildir_with(relay.c, mark), 10,
                      "a maildir file with %s" % mark)
    assert data.startswith(b"Received: from ") or \
        b"\r\nReceived: from " in data.split(b"\r\n\r\n")[0], data[:400]
    assert ("Subject: %s" % mark).encode() in data, data[:400]
    return data


def queued_id(text):
    ids = QUEUED.findall(text)
    assert ids, "no 'queued as ID' in:\n" + text[-3000:]
    return ids[-1]


def no_password_in_logs(relay):
    for p in relay.c.procs:
        with open(p.log_path, "rb") as f:
            data = f.read()
        assert redact(data) == data.decode("utf-8", "replace"), \
            "a password form in %s" % p.log_path


# ------------------------------------------------- without AUTH (open)


def test_smtplib_pipelined_plain(open_relay):
    """smtplib on a trusted loopback client: MAIL, RCPT, DATA; the 250
    names an id the API knows, with the envelope, not the header."""
    mark = "mark-smtplib-%d" % time.monotonic_ns()
    with smtplib.SMTP("127.0.0.1", open_relay.port,
                      timeout=h.scaled(CLIENT_TIMEOUT)) as s:
        s.ehlo("client.test")
        assert s.mail("env-from@example.com")[0] == 250
        assert s.rcpt("first@example.net")[0] == 250
        assert s.rcpt("second@example.org")[0] == 250
        code, text = s.data(message_bytes(mark))
        assert code == 250, (code, text)
    mid = queued_id(text.decode())
    arrived(open_relay, mid, mark)


def test_swaks_plain(open_relay):
    need("swaks")
    mark = "mark-swaks-%d" % time.monotonic_ns()
    rc, out = run(["swaks", "--server", "127.0.0.1",
                   "--port", str(open_relay.port), "--helo", "client.test",
                   "--from", "swaks@example.com", "--to", "to@example.net",
                   "--header", "Subject: %s" % mark,
                   "--body", "Body of %s." % mark,
                   "--timeout", str(int(h.scaled(CLIENT_TIMEOUT)))])
    assert rc == 0, out
    arrived(open_relay, queued_id(out), mark)


def test_msmtp_plain(open_relay, tmp_path):
    need("msmtp")
    mark = "mark-msmtp-%d" % time.monotonic_ns()
    log = tmp_path / "msmtp.log"
    rc, out = run(["msmtp", "--host=127.0.0.1",
                   "--port=%d" % open_relay.port, "--auth=off", "--tls=off",
                   "--domain=client.test", "--from=msmtp@example.com",
                   "--logfile=%s" % log, "--", "to@example.net"],
                  stdin=message_bytes(mark))
    assert rc == 0, out
    text = redact(log.read_bytes())
    arrived(open_relay, queued_id(text), mark)


def test_curl_plain(open_relay, tmp_path):
    need("curl")
    mark = "mark-curl-%d" % time.monotonic_ns()
    body = tmp_path / "mail.eml"
    body.write_bytes(message_bytes(mark))
    rc, out = run(["curl", "-sS", "-v", "--max-time",
                   str(int(h.scaled(CLIENT_TIMEOUT))),
                   "smtp://127.0.0.1:%d/client.test" % open_relay.port,
                   "--mail-from", "curl@example.com",
                   "--mail-rcpt", "to@example.net", "-T", str(body)])
    assert rc == 0, out
    arrived(open_relay, queued_id(out), mark)


def test_curl_starttls_required(open_relay, certs, tmp_path):
    """STARTTLS from a trusted client, the certificate verified against
    the test CA (curl checks the name: IP 127.0.0.1 is in the SAN)."""
    need("curl")
    open_relay.need_starttls()
    mark = "mark-curl-tls-%d" % time.monotonic_ns()
    body = tmp_path / "mail.eml"
    body.write_bytes(message_bytes(mark))
    rc, out = run(["curl", "-sS", "-v", "--max-time",
                   str(int(h.scaled(CLIENT_TIMEOUT))), "--ssl-reqd",
                   "--cacert", certs["ca"],
                   "smtp://127.0.0.1:%d/client.test" % open_relay.port,
                   "--mail-from", "curl-tls@example.com",
                   "--mail-rcpt", "to@example.net", "-T", str(body)])
    assert rc == 0, out
    assert "SSL connection using TLSv1." in out, out
    arrived(open_relay, queued_id(out), mark)


# --------------------------------------------------- with AUTH (locked)


def test_relay_refused_without_auth(locked_relay, certs):
    """No trusted network and no AUTH: nothing is accepted, before or
    after STARTTLS, and nothing is stored."""
    before = sum(locked_relay.c.stats().values())
    with smtplib.SMTP("127.0.0.1", locked_relay.port,
                      timeout=h.scaled(CLIENT_TIMEOUT)) as s:
        s.ehlo("client.test")
        code, text = s.mail("spam@example.com")
        if code == 250:
            code, text = s.rcpt("victim@example.net")
        assert 500 <= code < 600, (code, text)
        if s.has_extn("starttls"):
            s.rset()
            s.starttls(context=client_context(certs["ca"]))
            s.ehlo("client.test")
            code, text = s.mail("spam@example.com")
            if code == 250:
                code, text = s.rcpt("victim@example.net")
            assert 500 <= code < 600, (code, text)
    assert sum(locked_relay.c.stats().values()) == before


def test_auth_not_offered_before_starttls(locked_relay, certs):
    locked_relay.need_auth(certs["ca"])
    features = ehlo(locked_relay.port)
    assert "auth" not in features, features


def test_smtplib_starttls_auth(locked_relay, certs):
    """Wrong password: 535 and no session; right one, with PLAIN and with
    LOGIN: 235 and the message goes through."""
    mechs = locked_relay.need_auth(certs["ca"])
    assert "PLAIN" in mechs and "LOGIN" in mechs, mechs
    for mech in ("PLAIN", "LOGIN"):
        mark = "mark-smtplib-auth-%s-%d" % (mech, time.monotonic_ns())
        with smtplib.SMTP("127.0.0.1", locked_relay.port,
                          timeout=h.scaled(CLIENT_TIMEOUT)) as s:
            s.starttls(context=client_context(certs["ca"]))
            s.ehlo("client.test")
            for user, pw in ((USER, PASSWORD + "x"),
                             ("nobody@relay.test", PASSWORD)):
                s.user, s.password = user, pw
                auth = (s.auth_plain if mech == "PLAIN" else s.auth_login)
                with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                    s.auth(mech, auth)
                assert e.value.smtp_code == 535, e.value
            s.user, s.password = USER, PASSWORD
            code, _ = s.auth(mech, s.auth_plain if mech == "PLAIN"
                             else s.auth_login)
            assert code == 235
            assert s.mail("auth-%s@example.com" % mech.lower())[0] == 250
            assert s.rcpt("to@example.net")[0] == 250
            code, text = s.data(message_bytes(mark))
            assert code == 250, (code, text)
        arrived(locked_relay, queued_id(text.decode()), mark)
    no_password_in_logs(locked_relay)


def test_swaks_starttls_auth(locked_relay, certs):
    need("swaks")
    locked_relay.need_auth(certs["ca"])
    base = ["swaks", "--server", "127.0.0.1", "--port",
            str(locked_relay.port), "--helo", "client.test", "--tls",
            "--tls-verify", "--tls-ca-path", certs["ca"],
            "--auth", "LOGIN", "--auth-user", USER, "--auth-hide-password",
            "--from", "swaks-auth@example.com", "--to", "to@example.net",
            "--timeout", str(int(h.scaled(CLIENT_TIMEOUT)))]
    rc, out = run(base + ["--auth-password", PASSWORD + "x"])
    assert rc != 0 and "535" in out, out
    mark = "mark-swaks-auth-%d" % time.monotonic_ns()
    rc, out = run(base + ["--auth-password", PASSWORD,
                          "--header", "Subject: %s" % mark,
                          "--body", "Body of %s." % mark])
    assert rc == 0, out
    arrived(locked_relay, queued_id(out), mark)


def test_msmtp_starttls_auth(locked_relay, certs, tmp_path):
    need("msmtp")
    locked_relay.need_auth(certs["ca"])
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    log = tmp_path / "msmtp.log"
    mark = "mark-msmtp-auth-%d" % time.monotonic_ns()
    rc, out = run(["msmtp", "--host=127.0.0.1",
                   "--port=%d" % locked_relay.port, "--tls=on",
                   "--tls-starttls=on", "--tls-trust-file=%s" % certs["ca"],
                   "--auth=plain", "--user=%s" % USER,
                   "--passwordeval=cat %s" % pwfile,
                   "--domain=client.test", "--from=msmtp-auth@example.com",
                   "--logfile=%s" % log, "--", "to@example.net"],
                  stdin=message_bytes(mark))
    assert rc == 0, out
    text = redact(log.read_bytes())
    arrived(locked_relay, queued_id(text), mark)


def test_curl_starttls_auth(locked_relay, certs, tmp_path):
    need("curl")
    locked_relay.need_auth(certs["ca"])
    mark = "mark-curl-auth-%d" % time.monotonic_ns()
    body = tmp_path / "mail.eml"
    body.write_bytes(message_bytes(mark))
    rc, out = run(["curl", "-sS", "-v", "--max-time",
                   str(int(h.scaled(CLIENT_TIMEOUT))), "--ssl-reqd",
                   "--cacert", certs["ca"], "--user",
                   "%s:%s" % (USER, PASSWORD),
                   "smtp://127.0.0.1:%d/client.test" % locked_relay.port,
                   "--mail-from", "curl-auth@example.com",
                   "--mail-rcpt", "to@example.net", "-T", str(body)])
    assert rc == 0, out
    arrived(locked_relay, queued_id(out), mark)


def test_curl_smtps_auth(locked_relay, certs, tmp_path):
    """Implicit TLS (smtps_listen, port 465 style): TLS from the first
    byte, the certificate verified, then AUTH and a message."""
    need("curl")
    locked_relay.need_auth(certs["ca"])
    mark = "mark-curl-smtps-%d" % time.monotonic_ns()
    body = tmp_path / "mail.eml"
    body.write_bytes(message_bytes(mark))
    rc, out = run(["curl", "-sS", "-v", "--max-time",
                   str(int(h.scaled(CLIENT_TIMEOUT))),
                   "--cacert", certs["ca"], "--user",
                   "%s:%s" % (USER, PASSWORD),
                   "smtps://127.0.0.1:%d/client.test" %
                   locked_relay.smtps_port,
                   "--mail-from", "curl-smtps@example.com",
                   "--mail-rcpt", "to@example.net", "-T", str(body)])
    assert rc == 0, out
    assert "SSL connection using TLSv1." in out, out
    assert "STARTTLS" not in out, out
    arrived(locked_relay, queued_id(out), mark)


def test_swaks_smtps_wrong_password(locked_relay, certs):
    """Implicit TLS with a wrong password: 535, nothing stored."""
    need("swaks")
    locked_relay.need_auth(certs["ca"])
    before = sum(locked_relay.c.stats().values())
    rc, out = run(["swaks", "--server", "127.0.0.1", "--port",
                   str(locked_relay.smtps_port), "--tlsc", "--tls-verify",
                   "--tls-ca-path", certs["ca"], "--auth", "PLAIN",
                   "--auth-user", USER, "--auth-password", PASSWORD + "x",
                   "--auth-hide-password", "--from", "x@example.com",
                   "--to", "to@example.net", "--timeout",
                   str(int(h.scaled(CLIENT_TIMEOUT)))])
    assert rc != 0 and "535" in out, out
    assert sum(locked_relay.c.stats().values()) == before


# ------------------------------------------------------------- Postfix


class Postfix(postfix_fake.PrivatePostfix):
    """A private Postfix (no inet listener at all: mail comes in through
    its sendmail) relaying everything to relayhost with SASL over
    STARTTLS."""

    def __init__(self, port, ca):
        super().__init__("shivneri-postfix-", h.scaled(30))
        self.ca = os.path.join(self.etc, "ca.pem")
        shutil.copyfile(ca, self.ca)
        os.chmod(self.ca, 0o644)
        sasl = self._write("sasl_passwd", "[127.0.0.1]:%d %s:%s\n" %
                           (port, USER, PASSWORD), 0o600)
        self._write("master.cf", self.master_cf())
        self._write("main.cf", "\n".join(
            self.common_main_cf("postfix.test") + [
                # What the README tells an operator to write:
                "relayhost = [127.0.0.1]:%d" % port,
                "smtp_sasl_auth_enable = yes",
                "smtp_sasl_password_maps = texthash:" + sasl,
                "smtp_sasl_security_options = noanonymous",
                "smtp_sasl_tls_security_options = noanonymous",
                "smtp_tls_security_level = encrypt",
                "smtp_tls_CAfile = " + self.ca,
                "smtp_tls_loglevel = 1",
                ""]))

    def start(self):
        try:
            super().start()
        except RuntimeError as e:
            raise AssertionError(redact(str(e)))
        h.wait_for(self.master_pid, 10, "Postfix's master to run")

    def sendmail(self, sender, rcpt, data):
        p = self._run(["sendmail", "-C", self.etc, "-f", sender, "--", rcpt],
                      input=data)
        assert p.returncode == 0, p.stdout

    def log_tail(self, n=40):
        return redact(super().log_tail(n))


@pytest.fixture
def postfix(locked_relay, certs):
    need("postfix")
    need("sendmail")
    if os.geteuid() != 0:
        pytest.skip("a private Postfix needs root (its daemons drop to the "
                    "postfix user)")
    locked_relay.need_auth(certs["ca"])
    pf = Postfix(locked_relay.port, certs["ca"])
    try:
        yield pf
    finally:
        print("----- postfix maillog -----")
        print(pf.log_tail())
        pf.stop()


def test_postfix_relays_through_shivneri(locked_relay, postfix):
    """A message injected with Postfix's sendmail leaves Postfix over
    STARTTLS with SASL, is queued by Shivneri (Postfix logs the 250 with
    the id) and lands in the maildir with the envelope Postfix used."""
    postfix.start()
    mark = "mark-postfix-%d" % time.monotonic_ns()
    postfix.sendmail("app@example.com", "customer@example.net",
                     message_bytes(mark))

    def sent():
        with open(postfix.maillog, errors="replace") as f:
            text = f.read()
        # A deferral means Shivneri refused or failed it: no waiting for
        # Postfix's retry.
        for bad in ("status=bounced", "status=deferred"):
            if bad in text:
                raise AssertionError("Postfix: %s:\n%s" % (bad, redact(text)))
        for line in text.splitlines():
            if "status=sent" in line and "customer@example.net" in line:
                return line
        return None
    line = h.wait_for(sent, 20, "Postfix to relay the message")
    assert "relay=127.0.0.1[127.0.0.1]:%d" % locked_relay.port in line
    with open(postfix.maillog, errors="replace") as f:
        log = f.read()
    assert "Trusted TLS connection established" in log or \
        "TLS connection established" in log, redact(log)
    arrived(locked_relay, queued_id(line), mark)
    no_password_in_logs(locked_relay)
