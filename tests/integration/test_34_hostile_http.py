"""Hostile HTTP clients cannot starve the server (issue 6, items 3 and 4).

- Unauthenticated clients that declare 50 MiB bodies and push a few MiB
  each are answered 401 on the head alone: the server's RSS stays within
  a stated bound of its idle size, and a client with the key is served.
- Authenticated bodies are reserved from http_body_budget_bytes: past it,
  503 with Retry-After, on the head, before any body byte is kept.
- Slowloris: connections that trickle a head a byte a second are closed
  at http_header_timeout_s (the deadline is not reset by each byte), and a
  normal client is served throughout.
- http_max_connections: one more connection is answered 503 and closed;
  once others leave, new ones are served.
- http_max_client_connections: one client (an address, an IPv6 /64)
  cannot take every connection: one more from it is answered 503, another
  address is served, and it is served again once its own connections go.
- Each kind of refusal logs under its own limit: garbage cannot hide the
  line of a slow client.
"""

import json
import select
import socket
import threading
import time

import shivneri_harness as h

MIB = 1024 * 1024
RSS_BOUND = 64 * MIB  # over the idle RSS, with 30 hostile clients
KEY = "k-hostile-test"


def keyed(make_cluster, tmp_path, **server_extra):
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    keys.chmod(0o600)  # the server refuses a key file others can read
    server_extra["api_keys_file"] = str(keys)
    c = make_cluster(server_extra=server_extra)
    c.start_server()
    return c


def submit(c, n=0):
    return h.http(c.http_port, "POST", "/v1/messages",
                  body=json.dumps(h.message(n)).encode(),
                  headers={"Authorization": "Bearer " + KEY,
                           "Content-Type": "application/json"})


def big_head(auth=""):
    return ("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: "
            "application/json\r\n%sContent-Length: %d\r\n\r\n" %
            (auth, 50 * MIB)).encode()


def push(port, head, nbytes, out, i, chunk=256 * 1024):
    """Sends head, then up to nbytes of body in chunks while the server
    takes them; records the first status line seen (or None)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(10))
    got = b""
    try:
        s.sendall(head)
        sent = 0
        deadline = time.monotonic() + h.scaled(10)
        while sent < nbytes and time.monotonic() < deadline:
            r, w, _ = select.select([s], [s], [], 0.05)
            if r:
                d = s.recv(65536)
                if not d:
                    break
                got += d
            if w:
                try:
                    sent += s.send(b"x" * chunk)
                except OSError:
                    break
        while b"\r\n" not in got and time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.1)
            if r:
                d = s.recv(65536)
                if not d:
                    break
                got += d
    except OSError:
        pass
    finally:
        s.close()
    out[i] = got.split(b"\r\n", 1)[0] if got else None


def test_unauthenticated_bodies_do_not_grow_memory(make_cluster, tmp_path):
    c = keyed(make_cluster, tmp_path)
    pid = c.server.pid
    assert submit(c).status == 202
    idle = h.rss(pid)
    out = [None] * 30
    threads = [threading.Thread(target=push, args=(c.http_port, big_head(),
                                                   4 * MIB, out, i))
               for i in range(30)]
    peak = idle
    for t in threads:
        t.start()
    # The key holder is served while the flood is on.
    assert submit(c, 1).status == 202
    while any(t.is_alive() for t in threads):
        peak = max(peak, h.rss(pid))
        time.sleep(0.02)
    for t in threads:
        t.join()
    peak = max(peak, h.rss(pid))
    assert peak - idle < RSS_BOUND, (idle, peak)
    assert all(o is not None and b" 401 " in o for o in out), out
    assert submit(c, 2).status == 202


def test_body_budget_503_on_the_head(make_cluster, tmp_path):
    c = keyed(make_cluster, tmp_path, http_body_budget_bytes=16 * MIB)
    status, body = h.raw_http(
        c.http_port, big_head("Authorization: Bearer %s\r\n" % KEY))
    assert status == 503, (status, body)
    assert json.loads(body)["error"]["code"] == "unavailable"
    # One body that fits the budget is taken.
    assert submit(c).status == 202


def slow_client(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=h.scaled(5))
    s.setblocking(False)
    s.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    return s


def test_slowloris_closed_by_head_deadline(make_cluster):
    timeout_s = 2
    c = make_cluster(server_extra={"http_header_timeout_s": timeout_s})
    c.start_server()
    socks = [slow_client(c.http_port) for _ in range(200)]
    open_socks = set(socks)
    start = time.monotonic()
    deadline = start + h.scaled(timeout_s) + 8
    served = 0
    try:
        while open_socks and time.monotonic() < deadline:
            # One byte a second each: a header line that never ends.
            for s in list(open_socks):
                try:
                    s.send(b"X")
                except OSError:
                    open_socks.discard(s)
            r, _, _ = select.select(list(open_socks), [], [], 0)
            for s in r:
                try:
                    d = s.recv(4096)
                except OSError:
                    d = b""
                if not d or b" 408 " in d:
                    open_socks.discard(s)
            assert c.get("/healthz").status == 200
            served += 1
            time.sleep(min(1.0, max(0, deadline - time.monotonic())))
        elapsed = time.monotonic() - start
        assert not open_socks, "%d slow connections still open after %.1fs" \
            % (len(open_socks), elapsed)
        assert elapsed >= timeout_s - 0.5, elapsed
        assert served >= 2
    finally:
        for s in socks:
            s.close()


def test_max_connections(make_cluster):
    c = make_cluster(server_extra={"http_max_connections": 8,
                                   "http_header_timeout_s": 30})
    c.start_server()
    held = []
    try:
        for _ in range(8):
            held.append(socket.create_connection(("127.0.0.1", c.http_port)))
        # The listen queue is in order: these 8 are taken before the 9th.
        status, body = h.raw_http(c.http_port,
                                  b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503, (status, body)
        assert json.loads(body)["error"]["code"] == "unavailable"
        for s in held[:4]:
            s.close()
        del held[:4]
        h.wait_for(lambda: c.get("/healthz").status == 200, 5,
                   "served again once connections left")
    finally:
        for s in held:
            s.close()
    lines = [ln for ln in open(c.server.log_path)
             if "too many connections" in ln]
    assert 1 <= len(lines) <= 3, lines


def healthz_from(port, source):
    """GET /healthz from the loopback address source: (status, body)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    got = b""
    try:
        s.bind((source, 0))
        s.settimeout(h.scaled(5))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += data
    except ConnectionResetError:
        pass
    finally:
        s.close()
    if not got:
        return None, b""
    head, _, body = got.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_max_client_connections(make_cluster):
    c = make_cluster(server_extra={"http_max_connections": 100,
                                   "http_max_client_connections": 4,
                                   "http_header_timeout_s": 30})
    c.start_server()
    held = []
    try:
        for _ in range(4):
            held.append(socket.create_connection(("127.0.0.1", c.http_port)))
        # In order in the listen queue: the 4 are taken before these.
        for _ in range(20):
            status, body = healthz_from(c.http_port, "127.0.0.1")
            assert status == 503, (status, body)
            assert b"from your address" in body, body
        status, _ = healthz_from(c.http_port, "127.0.0.2")
        assert status == 200, status
        held.pop().close()
        h.wait_for(lambda: healthz_from(c.http_port, "127.0.0.1")[0] == 200,
                   5, "served again once one of its connections left")
    finally:
        for s in held:
            s.close()
    lines = [ln for ln in open(c.server.log_path)
             if "from one client" in ln]
    assert len(lines) == 1, lines


def test_slow_body_closed_by_rate_deadline(make_cluster):
    """A body must arrive within http_header_timeout_s + length / rate;
    trickling it does not move the deadline."""
    c = make_cluster(server_extra={"http_header_timeout_s": 1,
                                   "http_min_body_rate": 1000})
    c.start_server()
    body = json.dumps(h.message(0, text="y" * 1900)).encode()
    s = socket.create_connection(("127.0.0.1", c.http_port),
                                 timeout=h.scaled(5))
    start = time.monotonic()
    got = b""
    try:
        s.sendall(("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   "application/json\r\nContent-Length: %d\r\n\r\n" %
                   len(body)).encode())
        s.setblocking(False)
        sent = 0
        deadline = start + h.scaled(3) + 5
        while time.monotonic() < deadline:
            if sent < len(body) - 1:
                try:
                    sent += s.send(body[sent:sent + 20])
                except OSError:
                    break
            r, _, _ = select.select([s], [], [], 0.25)
            if r:
                try:
                    d = s.recv(4096)
                except OSError:
                    break
                if not d:
                    break
                got += d
    finally:
        s.close()
    elapsed = time.monotonic() - start
    assert got.startswith(b"HTTP/1.1 408 "), got[:200]
    # 1 s for the head, ~2 s for 2 KB at 1000 B/s: not before, and not
    # much after however the bytes trickle.
    assert elapsed >= 2.5, elapsed
    assert c.stats()["queued"] + c.stats()["delivered"] == 0


def test_each_kind_of_refusal_logs_its_own_line(make_cluster):
    """A bad request line and a head not in on time, within the same
    10 s: each kind has its own log limit, so a flood of cheap garbage
    cannot hide the slow clients' line (one limit served both before)."""
    c = make_cluster(server_extra={"http_header_timeout_s": 1})
    c.start_server()
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", c.http_port),
                                     timeout=h.scaled(5))
        s.sendall(b"\x16\x03\x01 garbage\r\n\r\n")
        s.recv(4096)
        s.close()
    slow = socket.create_connection(("127.0.0.1", c.http_port),
                                    timeout=h.scaled(10))
    try:
        slow.sendall(b"GET /healthz HTTP/1.1\r\n")
        assert b" 408 " in slow.recv(4096)
    finally:
        slow.close()

    def lines():
        with open(c.server.log_path, encoding="utf-8") as f:
            log = f.read()
        return (log.count("http - bad request"),
                log.count("http - request too slow"))
    h.wait_for(lambda: lines() == (1, 1), 5, "one line of each kind")
