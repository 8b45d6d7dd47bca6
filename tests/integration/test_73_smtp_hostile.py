"""The SMTP intake (issue 8) against hostile clients: what a peer that
does not play by the rules can make the server do, and that every such
attempt gets a clear reply, stores nothing it should not, and costs
bounded memory, time and log lines.

A pipelined flood whose replies outgrow the output bound is answered in
full (no stall once the client reads); ...
"""

import os
import socket
import sys
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
