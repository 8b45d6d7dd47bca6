"""The SMTP intake (issue 8) against hostile clients: what a peer that
does not play by the rules can make the server do.  Every attempt must
get a clear reply, store nothing it should not, and cost bounded memory,
time and log lines.

Defects these tests found (each fails on 3898ffb): a pipelined burst whose
replies pass the 64 KiB output bound in one read stalled until the idle
timeout when the kernel took every reply at once; one rate limit shared
by every kind of refusal let a cheap one hide AUTH guessing from the log;
a TLS handshake that never finishes held its connection 10 s past the
idle timeout; descriptor churn at the fd limit logged two lines a retry.
And on 4a4c7e2: a message whose first line starts with a space or a tab
folded into our Received header; the HELO name's "(", ";", quotes and
brackets reshaped that header; a session that may not send read 256 KiB
ahead and queued 64 KiB of replies like a trusted one.

What held, pinned here: a client that never reads is bounded (the server
stops reading); a message of exactly max_message_bytes (Received
included) is stored and one byte more is 552; a client gone right after
the dot has its message stored once, under the id of its 250, and
delivered (its two whole-suite failures were the test's own reset, not
the server: see there); trickled DATA meets the session limit; stalled
handshakes count against the client's cap."""

import base64
import re
import socket
import threading
import time

import pytest

import shivneri_harness as h
import test_70_smtp_intake as t70
import test_72_smtp_tls_auth as t72

MAX_BYTES = 20000


@pytest.fixture(scope="module")
def relay(module_cluster_factory, tmp_path_factory):
    """Loopback trusted, STARTTLS and AUTH on offer in clear on loopback
    (so EHLO's reply is long: a host with a longer name than this test
    machine's has it without AUTH), small limits."""
    folder = str(tmp_path_factory.mktemp("hostile"))
    cert, key = t72.make_cert(folder)
    port = h.free_port()
    c = module_cluster_factory(providers=("a",), server_extra={
        "smtp_listen": "127.0.0.1:%d" % port,
        "smtp_tls_cert_file": cert, "smtp_tls_key_file": key,
        "smtp_users_file": t72.users_file(folder),
        "smtp_allow_plain_auth": "yes",
        "max_message_bytes": MAX_BYTES,
        "smtp_max_bad_commands": 5})
    c.start_server()
    c.start_agent("a")
    c.smtp_port, c.cert, c.folder = port, cert, folder
    return c


@pytest.fixture(scope="module")
def locked(module_cluster_factory, tmp_path_factory):
    """Trusts no network: AUTH (offered in clear, on loopback) is the only
    way to send."""
    folder = str(tmp_path_factory.mktemp("locked"))
    port = h.free_port()
    c = module_cluster_factory(providers=("a",), server_extra={
        "smtp_listen": "127.0.0.1:%d" % port,
        "smtp_users_file": t72.users_file(folder),
        "smtp_allow_plain_auth": "yes",
        "smtp_trusted_networks": "",
        "smtp_max_bad_commands": 5})
    c.start_server()
    c.start_agent("a")
    c.smtp_port = port
    return c


def smtp_log(c, event):
    """The server's log lines of one smtp event."""
    with open(c.server.log_path, encoding="utf-8", errors="replace") as f:
        return [ln for ln in f if " smtp - %s " % event in ln]


class Reader(threading.Thread):
    """Reads reply lines off a socket as fast as they come, until a line
    that starts with `last`, EOF or the deadline."""

    def __init__(self, sock, last, timeout):
        super().__init__(daemon=True)
        self.sock, self.last, self.timeout = sock, last, timeout
        self.lines, self.end = 0, None

    def run(self):
        buf, deadline = b"", time.monotonic() + self.timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not chunk:
                self.end = "eof"
                return
            buf += chunk
            *done, buf = buf.split(b"\r\n")
            self.lines += len(done)
            if any(x.startswith(self.last) for x in done):
                self.end = "last"
                return
        self.end = "timeout"


def test_flood_of_replies_is_answered_in_full(relay):
    """A burst whose replies pass the output bound (64 KiB) in one read:
    reading stops there, and goes on once the client has read them, even
    when the kernel took every pending byte at once (nothing was left for
    the bufferevent to report written)."""
    n = 5000
    s = t70.Raw(relay.smtp_port)
    assert s.reply()[0] == 220
    r = Reader(s.s, b"250 2.0.0", h.scaled(10))
    r.start()
    # A bare LF ends a command line too: 7 bytes in, about 130 out, so
    # one 4 KiB read makes more than 64 KiB of replies.
    s.send(b"EHLO x\n" * n + b"NOOP\r\n")
    r.join()
    assert (r.end, r.lines) == ("last", 8 * n + 1)
    s.close()
    # The same burst from a client that has shut its side: every line it
    # sent is still answered before the close.
    s = t70.Raw(relay.smtp_port)
    assert s.reply()[0] == 220
    r = Reader(s.s, b"221 ", h.scaled(10))
    r.start()
    s.send(b"EHLO x\n" * n + b"QUIT\r\n")
    s.s.shutdown(socket.SHUT_WR)
    r.join()
    assert (r.end, r.lines) == ("last", 8 * n + 1)
    s.close()


def test_client_that_never_reads_is_bounded(relay):
    """A client that pipelines without end and never reads: the server
    stops reading once its replies wait (64 KiB) and its read-ahead is
    full (256 KiB), so what the client can push is what the two kernels'
    socket buffers hold, not the 128 MB it tries."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", relay.smtp_port))
    s.setblocking(False)
    chunk = b"EHLO x\n" * 9000
    pushed, last = 0, time.monotonic()
    while (time.monotonic() - last < h.scaled(0.5)
           and pushed < 128 * 1024 * 1024):
        try:
            pushed += s.send(chunk)
            last = time.monotonic()
        except BlockingIOError:
            time.sleep(0.01)
    s.close()
    assert pushed < 48 * 1024 * 1024, pushed
    # The server is still itself.
    t = t70.Raw(relay.smtp_port)
    assert t.reply()[0] == 220 and t.cmd(b"NOOP")[0] == 250
    t.close()


def received_len(helo):
    """The length of the Received header the server puts first."""
    host = "".join(ch if "!" <= ch <= "~" else "-"
                   for ch in socket.gethostname()[:255]) or "localhost"
    return len("Received: from %s ([127.0.0.1])\r\n\tby %s (Shivneri) with "
               "ESMTP;\r\n\tSun, 29 Nov 2026 10:00:00 +0000\r\n"
               % (helo, host))


def sized(n, mark):
    """A message of exactly n bytes (with its last CRLF) that needs no
    Date or Message-ID added."""
    head = ("Date: Sun, 29 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%s@t>\r\n"
            "From: ann@example.com\r\nTo: bob@example.net\r\n"
            "Subject: %s\r\n\r\n" % (mark, mark)).encode()
    pad = n - len(head) - 2
    lines = []
    while pad > 0:
        k = min(pad, 78)
        if pad - k in (1, 2):  # no line of one stray byte at the end
            k -= 3
        lines.append(b"y" * k)
        pad -= k + 2
    data = head + b"\r\n".join(lines) + b"\r\n"
    assert len(data) == n, (len(data), n)
    return data


def test_message_at_the_limit_and_one_byte_over(relay):
    """max_message_bytes is the stored message, Received included: a
    message that makes exactly that much is queued (and its stored copy
    is that long), one byte more is 552 and nothing is stored."""
    room = MAX_BYTES - received_len("t.example")
    r = t70.send_one(relay, sized(room, "at-limit"))
    mid = t70.queued_id(r)
    relay.wait_delivered([mid])
    stored = t70.maildir_file(relay, "a", "at-limit@t")
    assert stored is not None and len(stored) == MAX_BYTES
    before = t70.total(relay)
    r = t70.send_one(relay, sized(room + 1, "over-limit"))
    assert r == (552, ["552 5.3.4 Message too big for system"])
    assert t70.total(relay) == before


def queued_ids(c):
    """Message ids of the "intake queued" lines of the server's log."""
    with open(c.server.log_path, encoding="utf-8", errors="replace") as f:
        return [ln.split()[3] for ln in f if " intake " in ln
                and " queued bytes=" in ln]


def drain(sock):
    """What the server sends until it closes (or the socket's timeout)."""
    got = b""
    while len(got) < 1 << 20:
        try:
            chunk = sock.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    return got


def store_view(c, mid):
    """What the store says of message mid: status, provider, attempts."""
    r = c.get("/v1/messages/" + mid)
    if r.status != 200 or not r.json:
        return "GET /v1/messages/%s: %s" % (mid, r.status)
    m = r.json
    return "status=%s provider=%s attempt_count=%s error=%s attempts=%s" % (
        m.get("status"), m.get("provider"), m.get("attempt_count"),
        m.get("error"), m.get("attempts"))


def test_client_gone_right_after_the_dot(relay):
    """A client that sends its message and shuts its side without
    reading the 250: the message is stored once, under the id of the 250
    it reads afterwards, and delivered.  (Counted by its subject, not by
    the store's total: a message of an earlier test of this module still
    being stored would count too.)

    Its replies are read only after the shutdown, until the server
    closes: the server cannot tell, and a close with them unread makes the
    kernel answer the server's next write with a reset.  That reset is
    what lost this message in two whole-suite runs (at 9e7a0b2): when the
    server has read EHLO..DATA but not yet the message, and its write of
    their replies fails on the reset, libevent runs the write callback's
    error before the read callback, and the session ends in DATA with the
    message unread in the socket.  Rightly nothing is stored then (no 250
    went out), but the test wanted a delivery.  A gdb breakpoint on
    cmd_data forces that order every time; the same hold with this drain
    gets the message stored and delivered.  Unforced, under ASan and two
    CPU burners: 10 of 1,500 closing clients lost theirs, 0 of 1,500
    draining ones."""
    ids = set(queued_ids(relay))
    s = t70.Raw(relay.smtp_port)
    s.send(b"EHLO t.example\r\nMAIL FROM:<ann@example.com>\r\n"
           b"RCPT TO:<bob@example.net>\r\nDATA\r\n")
    s.send(sized(600, "gone-after-dot") + b".\r\n")
    s.s.shutdown(socket.SHUT_WR)
    got = drain(s.s)
    s.close()
    queued = re.findall(rb"^250 2\.0\.0 Ok: queued as (\S+)\r$", got, re.M)
    # No 250: the message was never stored; the replies and the log say
    # why (451: the store; none: the session ended before the dot).
    assert len(queued) == 1, "replies %r\n%s" % (
        got, h.tail(relay.server.log_path, 60))
    mid = queued[0].decode()
    try:
        h.wait_for(lambda: t70.maildir_file(relay, "a", "gone-after-dot@t"),
                   10, "the message of a client gone after the dot")
    except h.WaitTimeout as e:
        # Stored (it had its 250) but not delivered: a stall, which the
        # store's view of it and the server's log name.
        raise AssertionError("%s\n%s: %s\n%s" % (
            e, mid, store_view(relay, mid),
            h.tail(relay.server.log_path, 120))) from e
    new = [m for m in queued_ids(relay) if m not in ids]
    mine = [m for m in new if (relay.get("/v1/messages/" + m).json or {})
            .get("subject") == "gone-after-dot"]
    assert mine == [mid], (new, mine, mid)


def test_each_kind_of_refusal_logs_its_own_line(locked):
    """A refused relay, a password guess and the bad-command cut, within
    one 10 s window: each kind has its own rate limit, so each shows.
    (With one limit for all, the first, cheap to cause, hid the others:
    a client could keep its AUTH guessing out of the log.)"""
    s = t70.Raw(locked.smtp_port)
    assert s.reply()[0] == 220
    assert s.cmd(b"EHLO t.example")[0] == 250
    assert s.cmd(b"MAIL FROM:<ann@example.com>")[0] == 530
    wrong = base64.b64encode(b"\0" + t72.USER.encode() + b"\0nope")
    assert s.cmd(b"AUTH PLAIN " + wrong)[0] == 535
    codes = [s.cmd(b"FOO")[0] for _ in range(3)]
    assert codes == [500, 500, 421], codes
    s.close()
    for event in ("relay_refused", "auth_failed", "bad_commands"):
        h.wait_for(lambda: smtp_log(locked, event), 5, event + " logged")
    # Nothing of the guess is in the log.
    with open(locked.server.log_path, encoding="utf-8") as f:
        text = f.read()
    assert "nope" not in text and t72.USER not in text


def closed_within(sock, limit):
    """Seconds until the server closed sock (reading and dropping what
    comes), or None past limit."""
    t0 = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - t0 < limit:
        try:
            if sock.recv(4096) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            continue
        except ConnectionResetError:
            return time.monotonic() - t0
    return None


def test_stalled_tls_handshakes(make_cluster, tmp_path):
    """TLS handshakes that never finish (nothing sent after STARTTLS's
    220, a partial record on smtps_listen) count against the client's
    cap and end at the idle timeout, at once: no reply can reach such a
    client, so there is nothing to wait for (the close used to wait 10 s
    more for a 421 that could never go out).  A handshake that finished
    gets its 421 over TLS."""
    cert, key = t72.make_cert(str(tmp_path))
    port, sport = h.free_port(), h.free_port()
    c = make_cluster(providers=("a",), server_extra={
        "smtp_listen": "127.0.0.1:%d" % port,
        "smtps_listen": "127.0.0.1:%d" % sport,
        "smtp_tls_cert_file": cert, "smtp_tls_key_file": key,
        "smtp_timeout_s": 1, "smtp_max_client_connections": 2})
    c.start_server()
    a = t70.Raw(port)
    assert a.reply()[0] == 220 and a.cmd(b"EHLO t.example")[0] == 250
    assert a.cmd(b"STARTTLS")[0] == 220
    b = socket.create_connection(("127.0.0.1", sport))
    b.sendall(b"\x16\x03\x01\x02\x00\x01\x00")  # a ClientHello's start
    third = t70.Raw(port)
    assert third.reply() == (
        421, ["421 4.7.0 Too many connections from your address"])
    third.close()
    # 1 s of idle timeout; the old close took 11 s.
    for s in (a.s, b):
        took = closed_within(s, 8)
        assert took is not None and took < 7, took
        s.close()
    # Done with the stalled ones: a handshake that finishes and then
    # idles gets its 421 in TLS.
    raw = socket.create_connection(("127.0.0.1", sport))
    t = t72.context(cert).wrap_socket(raw, server_hostname="127.0.0.1")
    f = t.makefile("rb")
    assert f.readline().startswith(b"220 ")
    assert f.readline() == (
        b"421 4.4.2 Timeout exceeded, closing connection\r\n")
    t.close()
    assert smtp_log(c, "timeout")


def test_trickled_data_meets_the_session_limit(make_cluster):
    """A client trickling its message a byte at a time stays under the
    idle timeout (each byte is progress) but not past the session limit:
    421 4.4.2 in the middle of DATA, and nothing stored."""
    port = h.free_port()
    c = make_cluster(providers=("a",), server_extra={
        "smtp_listen": "127.0.0.1:%d" % port,
        "smtp_timeout_s": 2, "smtp_max_session_s": 3})
    c.start_server()
    s = t70.Raw(port)
    assert s.reply()[0] == 220
    for cmd in (b"EHLO t.example", b"MAIL FROM:<ann@example.com>",
                b"RCPT TO:<bob@example.net>"):
        assert s.cmd(cmd)[0] == 250
    assert s.cmd(b"DATA")[0] == 354
    t0 = time.monotonic()
    s.s.settimeout(0.3)
    got = b""
    for ch in t70.body(1) * 20:
        if time.monotonic() - t0 > h.scaled(6):
            break
        try:
            got = s.s.recv(4096)
            break
        except socket.timeout:
            s.send(bytes([ch]))
    assert got == b"421 4.4.2 Session too long, closing connection\r\n", got
    assert time.monotonic() - t0 < h.scaled(5)
    s.close()
    assert t70.total(c) == 0


def test_descriptor_churn_logs_a_bounded_number_of_lines(make_cluster):
    """At its descriptor limit, a peer that frees a connection and takes
    another in turn ends the accept pause and starts the next at every
    retry: the pauses are logged once per 10 s, not twice a retry (it
    was about 20 lines a second), and the server serves again after."""
    limit = 48
    port = h.free_port()
    c = make_cluster(providers=("a",), server_extra={
        "smtp_listen": "127.0.0.1:%d" % port})
    c.start_server()
    lines = h.descriptor_churn(c.server.pid, port, limit, c.server.log_path,
                               " smtp - accept")
    assert len(lines) <= 4, lines[:6]

    def served():
        s = t70.Raw(port)
        try:
            return s.reply()[0] == 220
        finally:
            s.close()
    h.wait_for(served, 10, "served again once the clients left")


def test_junk_commands_end_in_421(relay):
    """NOOP, RSET and VRFY cost a client nothing: past 100 of them since
    its last stored message each also counts as a refused command
    (Postfix's smtpd_junk_command_limit), so a loop of them ends in 421
    (here at smtp_max_bad_commands = 5) long before the session limit; a
    stored message starts the count again."""
    s = t70.Raw(relay.smtp_port)
    assert s.reply()[0] == 220
    assert s.cmd(b"EHLO x")[0] == 250
    s.send(b"NOOP\r\nRSET\r\nVRFY bob\r\n" * 30)
    assert {s.reply()[0] for _ in range(90)} == {250, 252}
    assert s.cmd(b"MAIL FROM:<ann@example.com>")[0] == 250
    assert s.cmd(b"RCPT TO:<bob@example.net>")[0] == 250
    assert s.cmd(b"DATA")[0] == 354
    code, lines = s.cmd(b"From: ann@example.com\r\nSubject: junk\r\n\r\n"
                        b"body\r\n.")
    assert code == 250, lines
    s.send(b"NOOP\r\n" * 100)
    assert {s.reply()[0] for _ in range(100)} == {250}
    s.send(b"NOOP\r\n" * 5)
    codes = [s.reply()[0] for _ in range(5)]
    assert codes == [250, 250, 250, 250, 421], codes
    assert s.closed()
    s.close()


@pytest.mark.parametrize("lead", [b" ", b"\t"])
def test_leading_continuation_cannot_extend_our_received(relay, lead):
    """A message whose first line starts with a space or a tab would be a
    continuation of the Received header the server puts in front of it:
    the client could append text to our own trace header (a "for <...>",
    a second date).  The same bytes through a raw MIME upload are refused
    ("starts with a continuation"); over SMTP our header hid that, and
    the message was stored with the client's line folded into ours (on
    4a4c7e2).  Now 554, nothing stored, and the session goes on."""
    before = t70.total(relay)
    s = t70.Raw(relay.smtp_port)
    assert s.reply()[0] == 220
    for cmd in (b"EHLO t.example", b"MAIL FROM:<ann@example.com>",
                b"RCPT TO:<bob@example.net>"):
        assert s.cmd(cmd)[0] == 250
    assert s.cmd(b"DATA")[0] == 354
    code, lines = s.cmd(lead + b"for <mallory@example.org>; spoofed\r\n"
                        b"From: ann@example.com\r\nSubject: fold\r\n\r\n"
                        b"body\r\n.")
    assert code == 554, lines
    assert lines == ["554 5.6.0 Message refused: message: starts with a "
                     "continuation"], lines
    assert s.cmd(b"NOOP")[0] == 250
    s.close()
    assert t70.total(relay) == before


def received_of(c, marker):
    """Our Received header (unfolded) of the stored message with marker in
    its Message-ID."""
    stored = h.wait_for(lambda: t70.maildir_file(c, "a", marker), 10,
                        "message " + marker + " delivered")
    head = stored.split(b"\r\n\r\n", 1)[0].decode()
    first = re.search(r"^Received:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head,
                      re.M)
    return first.group(1).replace("\r\n", "")


def comments_balanced(text):
    """RFC 5322 comments and quoted strings of a header value: every "("
    closed before the end, no ")" without its "(", no quote left open."""
    depth, quoted, esc = 0, False, False
    for ch in text:
        if esc:
            esc = False
        elif ch == "\\":
            esc = True
        elif quoted:
            quoted = ch != '"'
        elif ch == '"':
            quoted = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0 and not quoted and not esc


@pytest.mark.parametrize("helo,kept", [
    (b"x(", False), (b"spoof.example([203.0.113.9])", False),
    (b'a"b', False), (b"a;b", False), (b"a\\(b", False), (b"<a>", False),
    (b"[127.0.0.1]", True), (b"[IPv6:2001:db8::1]", True),
    (b"mx-1.example.org", True)])
def test_helo_cannot_reshape_our_received(relay, helo, kept):
    """The EHLO argument goes into our Received header, which readers
    parse by RFC 5322: a "(" there opened a comment that swallowed "by
    HOST ... with ESMTP" and the rest, a "([203.0.113.9])" put a forged
    address ahead of the real one, a quote or backslash swallowed the
    rest, a ";" ended the tokens early (all stored as given on 4a4c7e2).
    Those characters now go in as "?"; a host name and an address literal
    stay as written."""
    marker = "helo-%d" % abs(hash(helo))
    s = t70.Raw(relay.smtp_port)
    assert s.reply()[0] == 220
    for cmd in (b"EHLO " + helo, b"MAIL FROM:<ann@example.com>",
                b"RCPT TO:<bob@example.net>"):
        assert s.cmd(cmd)[0] == 250
    assert s.cmd(b"DATA")[0] == 354
    code, lines = s.cmd(b"Message-ID: <" + marker.encode() + b"@t>\r\n"
                        b"From: ann@example.com\r\n\r\nbody\r\n.")
    assert code == 250, lines
    s.close()
    rec = received_of(relay, marker + "@t")
    given = re.match(r" from (\S+) \(\[127\.0\.0\.1\]\)\tby ", rec)
    assert given is not None, rec
    assert comments_balanced(rec), rec
    assert rec.count(";") == 1, rec
    if kept:
        assert given.group(1) == helo.decode(), rec
    else:
        assert not set(given.group(1)) & set('()<>;"\\'), rec


def tcp_queues():
    """(local port, remote port) -> (tx_queue, rx_queue) of every IPv4
    TCP socket of this host (/proc/net/tcp): bytes a kernel holds."""
    out = {}
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            tx, rx = (int(v, 16) for v in fields[4].split(":"))
            out[(int(fields[1][-4:], 16), int(fields[2][-4:], 16))] = (tx, rx)
    return out


def test_sessions_that_may_not_send_hold_little(locked):
    """A client that may not send (no trusted network, no AUTH) has a few
    short commands to say, yet each of its sessions read 256 KiB ahead
    and queued 64 KiB of replies like a trusted one's: 512 sessions from a
    few addresses, pipelining EHLO and never reading, held 160 MiB (on
    4a4c7e2).  Such a session now reads 16 KiB ahead and queues 16 KiB of
    replies.  What a session holds is counted from the kernels' queues,
    not the server's RSS (ASan's quarantine grows with every command): the
    bytes the server took off the socket, less the commands whose replies
    are already in the kernels, leaves what it holds in its input (and
    the commands of the replies it holds)."""
    probe = t70.Raw(locked.smtp_port)
    greeting = sum(len(x) + 2 for x in probe.reply()[1])
    reply = sum(len(x) + 2 for x in probe.cmd(b"EHLO x")[1])
    probe.close()
    cmd = b"EHLO x\n"
    socks = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", locked.smtp_port))
        s.setblocking(False)
        socks.append([s, 0])
    chunk = cmd * 9000
    last = time.monotonic()
    # Until the server stops taking bytes, or a bound on the whole: a
    # server that reads without end fails below, it does not hang here.
    end = last + h.scaled(20)
    while (time.monotonic() - last < h.scaled(0.5)
           and time.monotonic() < end):
        for entry in socks:
            try:
                n = entry[0].send(chunk)
            except BlockingIOError:
                continue
            entry[1] += n
            last = time.monotonic()
        time.sleep(0.01)
    queues = tcp_queues()
    held = []
    for s, sent in socks:
        mine = s.getsockname()[1]
        ctx, crx = queues[(mine, locked.smtp_port)]
        stx, srx = queues[(locked.smtp_port, mine)]
        taken = sent - ctx - srx
        answered = (stx + crx - greeting) // reply * len(cmd)
        held.append((taken - answered) >> 10)
        s.close()
    assert max(held) < 64, "KiB held a session: %s" % held
    t = t70.Raw(locked.smtp_port)
    assert t.reply()[0] == 220 and t.cmd(b"NOOP")[0] == 250
    t.close()
