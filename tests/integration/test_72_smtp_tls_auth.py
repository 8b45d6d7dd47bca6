"""SMTP submission over TLS and with AUTH (issue 8), with a self-signed
certificate made by openssl at test time: STARTTLS (and the plain-text
commands pipelined after it dropped, CVE-2011-0411), implicit TLS on
smtps_listen, a new certificate taken on SIGHUP; AUTH PLAIN and LOGIN
offered only after STARTTLS, success and failure (535, counted as a bad
command), a client's failures across sessions earning it waits (454 with
no check), relay refused without it (530), and AUTH without TLS only on
loopback with smtp_allow_plain_auth."""

import base64
import os
import signal
import smtplib
import socket
import ssl
import subprocess

import pytest

import shivneri_harness as h

USER = "app@relay.test"
PASSWORD = "Tls-72-heron-Password-5e1f"


def make_cert(folder, name="cert"):
    """A self-signed certificate for 127.0.0.1; (cert, key) paths."""
    cert = os.path.join(folder, name + ".pem")
    key = os.path.join(folder, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=30)
    os.chmod(key, 0o600)
    return cert, key


def users_file(folder):
    p = subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                       input=PASSWORD.encode(), stdout=subprocess.PIPE,
                       check=True, timeout=30)
    path = os.path.join(folder, "users")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("%s:%s\n" % (USER, p.stdout.decode().strip()))
    return path


def context(cert):
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = True
    return ctx


def body(mark):
    return ("From: ann@example.com\r\nTo: bob@example.net\r\n"
            "Subject: %s\r\n\r\nhello\r\n" % mark).encode()


def queued(resp):
    text = resp.decode() if isinstance(resp, bytes) else resp
    assert "queued as" in text, text
    return text.rsplit(" ", 1)[1]


def maildir_with(c, mark):
    d = os.path.join(c.maildir("a"), "new")
    for f in os.listdir(d) if os.path.isdir(d) else []:
        with open(os.path.join(d, f), "rb") as fh:
            data = fh.read()
        if mark.encode() in data:
            return data
    return None


@pytest.fixture(scope="module")
def tls_relay(module_cluster_factory, tmp_path_factory):
    """A relay with STARTTLS and smtps_listen that trusts no network:
    only AUTH lets a client send."""
    folder = str(tmp_path_factory.mktemp("tls"))
    cert, key = make_cert(folder)
    port, sport = h.free_port(), h.free_port()
    c = module_cluster_factory(providers=("a",), server_extra={
        "smtp_listen": "127.0.0.1:%d" % port,
        "smtps_listen": "127.0.0.1:%d" % sport,
        "smtp_tls_cert_file": cert, "smtp_tls_key_file": key,
        "smtp_users_file": users_file(folder),
        "smtp_trusted_networks": "",
        "smtp_max_bad_commands": 4})
    c.start_server()
    c.start_agent("a")
    c.smtp_port, c.smtps_port, c.cert, c.folder = port, sport, cert, folder
    return c


def test_starttls_then_auth(tls_relay):
    """AUTH is not offered before STARTTLS (and refused 538 if tried);
    after it, AUTH PLAIN works and the message is queued, with ESMTPSA in
    its Received header."""
    c = tls_relay
    with smtplib.SMTP("127.0.0.1", c.smtp_port, timeout=h.scaled(10)) as s:
        code, _ = s.ehlo("client.example")
        assert code == 250
        assert s.has_extn("starttls")
        assert not s.has_extn("auth")
        code, resp = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            ("\0%s\0%s" % (USER, PASSWORD)).encode()).decode())
        assert code == 538 and resp.startswith(b"5.7.11"), resp
        # Without AUTH, sending is refused: 530 5.7.0.
        code, resp = s.mail("ann@example.com")
        assert code == 530 and resp.startswith(b"5.7.0"), resp
        s.starttls(context=context(c.cert))
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        assert set(s.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        s.login(USER, PASSWORD)
        s.mail("ann@example.com")
        s.rcpt("bob@example.net")
        code, resp = s.data(body("tls-plain"))
        assert code == 250, resp
    mid = queued(resp)
    c.wait_delivered([mid])
    data = h.wait_for(lambda: maildir_with(c, "tls-plain"), 10, "the file")
    assert b"with ESMTPSA;" in data


def test_auth_login_and_failure(tls_relay):
    c = tls_relay
    with smtplib.SMTP("127.0.0.1", c.smtp_port, timeout=h.scaled(10)) as s:
        s.starttls(context=context(c.cert))
        s.ehlo("client.example")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(USER, "wrong-" + PASSWORD)
        assert e.value.smtp_code == 535
        assert e.value.smtp_error.startswith(b"5.7.8")
        s.user, s.password = USER, PASSWORD
        code, resp = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235, resp
        s.mail("ann@example.com")
        s.rcpt("bob@example.net")
        code, resp = s.data(body("tls-login"))
        assert code == 250, resp
    c.wait_delivered([queued(resp)])
    for p in c.procs:
        with open(p.log_path, "rb") as f:
            assert PASSWORD.encode() not in f.read()


def test_auth_failures_end_the_session(tls_relay):
    """Guessing passwords counts as bad commands: the 4th gets 421."""
    c = tls_relay
    s = smtplib.SMTP("127.0.0.1", c.smtp_port, timeout=h.scaled(10))
    s.starttls(context=context(c.cert))
    s.ehlo("client.example")
    codes = []
    for n in range(4):
        code, _ = s.docmd("AUTH", "PLAIN " + base64.b64encode(
            ("\0%s\0guess-%d" % (USER, n)).encode()).decode())
        codes.append(code)
    assert codes == [535, 535, 535, 421], codes
    s.close()


def auth_from(c, source, password, tries=1):
    """AUTH PLAIN `tries` times in one STARTTLS session from the loopback
    address source; the reply codes."""
    s = smtplib.SMTP("127.0.0.1", c.smtp_port, timeout=h.scaled(10),
                     source_address=(source, 0))
    try:
        s.starttls(context=context(c.cert))
        s.ehlo("client.example")
        return [s.docmd("AUTH", "PLAIN " + plain_b64("", USER, password))[0]
                for _ in range(tries)]
    finally:
        s.close()


def test_guessing_across_sessions_earns_waits(tls_relay):
    """Ten failed checks from one client are free; the eleventh earns a
    2 s wait, in which even the right password gets 454 4.7.0 without a
    check (the AUTH worker's time is not the guesser's), while another
    client is served at once; after the wait the right password works."""
    c = tls_relay
    guesser, other = "127.0.0.5", "127.0.0.6"
    codes = []
    for n in range(5):  # two a session: under smtp_max_bad_commands
        codes += auth_from(c, guesser, "guess-%d" % n, tries=2)
    codes += auth_from(c, guesser, "guess-last")  # earns the wait
    assert codes == [535] * 11, codes
    assert auth_from(c, guesser, PASSWORD) == [454]
    assert auth_from(c, other, PASSWORD) == [235]
    h.wait_for(lambda: auth_from(c, guesser, PASSWORD) == [235], 10,
               "the guesser's wait to end")
    with open(c.server.log_path, "rb") as f:
        log = f.read()
    assert log.count(b"auth_penalty") + log.count(b"auth_refused") <= 2, log
    assert b"guess-" not in log and PASSWORD.encode() not in log


def plain_b64(authz, user, password):
    return base64.b64encode(("%s\0%s\0%s" % (authz, user, password))
                            .encode()).decode()


def test_auth_after_helo_is_refused(tls_relay):
    """AUTH is an ESMTP extension (RFC 4954): after HELO, even with the
    right password, it is 503 5.5.1 and a bad command (the 4th: 421)."""
    c = tls_relay
    s = smtplib.SMTP("127.0.0.1", c.smtp_port, timeout=h.scaled(10))
    s.starttls(context=context(c.cert))
    code, _ = s.helo("client.example")
    assert code == 250
    replies = [s.docmd("AUTH", "PLAIN " + plain_b64("", USER, PASSWORD))
               for _ in range(4)]
    assert [r[0] for r in replies] == [503, 503, 503, 421], replies
    assert replies[0][1].startswith(b"5.5.1"), replies
    s.close()


def test_auth_as_another_identity_is_refused(tls_relay):
    """A PLAIN authorization identity other than the user, with the right
    password, is refused as credentials are (535 5.7.8, RFC 4954), not as
    syntax (501), and counts with wrong passwords toward the 421."""
    c = tls_relay
    s = smtplib.SMTP("127.0.0.1", c.smtp_port, timeout=h.scaled(10))
    s.starttls(context=context(c.cert))
    s.ehlo("client.example")
    replies = [
        s.docmd("AUTH", "PLAIN " + plain_b64("boss@relay.test", USER,
                                              PASSWORD)),
        s.docmd("AUTH", "PLAIN " + plain_b64("", USER, "guess")),
        s.docmd("AUTH", "PLAIN " + plain_b64("x", USER, PASSWORD)),
        s.docmd("AUTH", "PLAIN " + plain_b64("x", USER, PASSWORD))]
    assert [r[0] for r in replies] == [535, 535, 535, 421], replies
    assert replies[0][1].startswith(b"5.7.8"), replies
    s.close()
    # The session may still authenticate as itself.
    with smtplib.SMTP("127.0.0.1", c.smtp_port, timeout=h.scaled(10)) as s:
        s.starttls(context=context(c.cert))
        s.ehlo("client.example")
        code, resp = s.docmd("AUTH", "PLAIN " + plain_b64(USER, USER,
                                                          PASSWORD))
        assert code == 235, resp


def test_plaintext_after_starttls_is_dropped(tls_relay):
    """A command pipelined in plain text after STARTTLS never runs inside
    the TLS session: the first reply there is the EHLO's."""
    c = tls_relay
    raw = socket.create_connection(("127.0.0.1", c.smtp_port),
                                   timeout=h.scaled(10))
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220 ")
    raw.sendall(b"EHLO a.example\r\n")
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    raw.sendall(b"STARTTLS\r\nMAIL FROM:<evil@example.com>\r\n")
    assert f.readline().startswith(b"220 2.0.0")
    t = context(c.cert).wrap_socket(raw, server_hostname="127.0.0.1")
    t.sendall(b"EHLO a.example\r\n")
    tf = t.makefile("rb")
    first = tf.readline()
    assert first.startswith(b"250"), first
    while first[3:4] == b"-":
        first = tf.readline()
    t.sendall(b"RCPT TO:<bob@example.net>\r\n")
    assert tf.readline().startswith(b"503 5.5.1"), "MAIL ran"
    t.close()


def test_implicit_tls(tls_relay):
    c = tls_relay
    with smtplib.SMTP_SSL("127.0.0.1", c.smtps_port, timeout=h.scaled(10),
                          context=context(c.cert)) as s:
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        assert "PLAIN" in s.esmtp_features["auth"]
        s.login(USER, PASSWORD)
        s.mail("ann@example.com")
        s.rcpt("bob@example.net")
        code, resp = s.data(body("implicit"))
        assert code == 250, resp
    c.wait_delivered([queued(resp)])


def read_reply(f):
    line = f.readline()
    while line[3:4] == b"-":
        line = f.readline()
    return line


def test_tls_close_sends_close_notify(tls_relay):
    """After QUIT over TLS, on both listeners, the server ends TLS with a
    close_notify before the FIN, so the client can tell the end of the
    session from a cut connection (unwrap() raises on a bare FIN)."""
    c = tls_relay
    for port, starttls in ((c.smtp_port, True), (c.smtps_port, False)):
        raw = socket.create_connection(("127.0.0.1", port),
                                       timeout=h.scaled(10))
        if starttls:
            f = raw.makefile("rb")
            assert f.readline().startswith(b"220 ")
            raw.sendall(b"EHLO a.example\r\n")
            read_reply(f)
            raw.sendall(b"STARTTLS\r\n")
            assert read_reply(f).startswith(b"220 2.0.0")
            f.close()
        ctx = context(c.cert)
        # Python takes a bare EOF as an end unless told not to.
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF
        t = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        tf = t.makefile("rb")
        if not starttls:
            assert tf.readline().startswith(b"220 ")
        t.sendall(b"EHLO a.example\r\nQUIT\r\n")
        read_reply(tf)
        assert read_reply(tf).startswith(b"221 "), port
        tf.close()
        t.unwrap().close()


def test_sighup_takes_a_new_certificate(tls_relay):
    """A new certificate and key written over the old files are served
    after SIGHUP; a client that trusts only the new one gets in."""
    c = tls_relay
    folder = os.path.join(c.folder, "new")
    os.mkdir(folder)
    cert2, key2 = make_cert(folder)
    key_path = c.cert[:-len(".pem")] + ".key"
    for src, dst in ((key2, key_path), (cert2, c.cert)):
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    c.server.signal(signal.SIGHUP)

    def served():
        ctx = context(cert2)
        try:
            with smtplib.SMTP_SSL("127.0.0.1", c.smtps_port,
                                  timeout=h.scaled(5), context=ctx) as s:
                return s.noop()[0] == 250
        except ssl.SSLError:
            return False
    h.wait_for(served, 10, "the new certificate after SIGHUP")


def test_plain_auth_on_loopback_when_allowed(make_cluster, tmp_path):
    """smtp_allow_plain_auth = yes on a loopback listener: AUTH without
    TLS; the session is then allowed to send (ESMTPA)."""
    port = h.free_port()
    c = make_cluster(providers=("a",), server_extra={
        "smtp_listen": "127.0.0.1:%d" % port,
        "smtp_users_file": users_file(str(tmp_path)),
        "smtp_trusted_networks": "", "smtp_allow_plain_auth": "yes"})
    c.start_server()
    c.start_agent("a")
    with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10)) as s:
        s.ehlo("client.example")
        assert not s.has_extn("starttls")
        s.login(USER, PASSWORD)
        s.mail("ann@example.com")
        s.rcpt("bob@example.net")
        code, resp = s.data(body("plain-auth"))
        assert code == 250, resp
    c.wait_delivered([queued(resp)])
