"""Request smuggling and answers that are all ours (issue 6, item 6).

Every probe goes over a raw socket: a head that HTTP forbids or that two
parsers could read differently is answered with our JSON error (400, or
the stated code), the connection is closed, and nothing is queued.  Known
methods on a known path that does not take them get 405 with Allow, and a
missing key 401 with WWW-Authenticate.  Keep-alive and pipelining still
work: requests sent back to back are answered in order.
"""

import json
import socket
import time

import pytest

import shivneri_harness as h

MSG = json.dumps(h.message(0)).encode()
SMUGGLED = json.dumps(h.message(1, subject="smuggled")).encode()


@pytest.fixture(scope="module")
def cl(module_cluster_factory):
    c = module_cluster_factory()
    c.start_server()
    return c


def exchange(port, data, timeout=5):
    """Sends data, reads until the server closes; (bytes, closed)."""
    s = socket.create_connection(("127.0.0.1", port),
                                 timeout=h.scaled(timeout))
    got = b""
    closed = False
    try:
        s.sendall(data)
        deadline = time.monotonic() + h.scaled(timeout)
        while time.monotonic() < deadline:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                closed = True
                break
            except socket.timeout:
                break
            if not d:
                closed = True
                break
            got += d
    finally:
        s.close()
    return got, closed


def parse(resp):
    """(status, headers dict lower-cased, body) of the first answer."""
    head, _, body = resp.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    return status, hdrs, body[:n]


def total(cl):
    s = cl.stats()
    return s["queued"] + s["sending"] + s["delivered"] + s["failed"]


def post_head(extra, length=None):
    n = len(MSG) if length is None else length
    return ("POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\n%s" % extra).replace(
                "{n}", str(n)).encode()


# name, raw request, expected status
PROBES = [
    ("two_lengths_differ",
     post_head("Content-Length: {n}\r\nContent-Length: %d\r\n\r\n" %
               (len(MSG) + 4)) + MSG + b"XXXX", 400),
    ("two_lengths_equal",
     post_head("Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n") + MSG,
     400),
    ("length_plus_sign", post_head("Content-Length: +{n}\r\n\r\n") + MSG,
     400),
    ("length_minus_sign", post_head("Content-Length: -1\r\n\r\n"), 400),
    ("length_list", post_head("Content-Length: {n}, {n}\r\n\r\n") + MSG,
     400),
    ("te_space_before_colon",
     post_head("Transfer-Encoding : chunked\r\nContent-Length: {n}\r\n\r\n")
     + MSG, 400),
    ("te_and_cl",
     post_head("Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n\r\n")
     + b"%x\r\n" % len(MSG) + MSG + b"\r\n0\r\n\r\n", 400),
    ("te_gzip", post_head("Transfer-Encoding: gzip\r\n\r\n"), 400),
    ("te_chunked_refused",
     post_head("Transfer-Encoding: chunked\r\n\r\n") +
     b"%x\r\n" % len(MSG) + MSG + b"\r\n0\r\n\r\n", 411),
    ("bare_lf_head",
     post_head("Content-Length: {n}\r\n\r\n").replace(b"\r\n", b"\n") + MSG,
     400),
    ("bare_lf_one_line",
     post_head("Content-Length: {n}\nX-A: b\r\n\r\n") + MSG, 400),
    ("bare_cr",
     post_head("Content-Length: {n}\rX-A: b\r\n\r\n") + MSG, 400),
    ("obs_fold",
     post_head("X-A: b\r\n c\r\nContent-Length: {n}\r\n\r\n") + MSG, 400),
    ("space_in_name", post_head("X A: b\r\nContent-Length: {n}\r\n\r\n")
     + MSG, 400),
    ("nul_in_head", post_head("X-A: b\x00c\r\nContent-Length: {n}\r\n\r\n")
     + MSG, 400),
    ("unknown_method", b"FROB /v1/messages HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("lower_case_method", b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("absolute_target", b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\n\r\n",
     400),
    ("asterisk_target", b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    ("http_2_0", b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ("http_0_9", b"GET /healthz\r\n\r\n", 505),
    ("empty_line_first", b"\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
     400),
    ("huge_header",
     b"GET /healthz HTTP/1.1\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ("too_many_headers",
     b"GET /healthz HTTP/1.1\r\n" + b"X-A: b\r\n" * 101 + b"\r\n", 431),
]


@pytest.mark.parametrize("name,raw,status", PROBES,
                         ids=[p[0] for p in PROBES])
def test_probe_refused_and_closed(cl, name, raw, status):
    before = total(cl)
    got, closed = exchange(cl.http_port, raw)
    assert got, "no answer to %s" % name
    st, hdrs, body = parse(got)
    assert st == status, got[:300]
    assert hdrs["content-type"] == "application/json", got[:300]
    assert json.loads(body)["error"]["code"], body
    assert hdrs.get("connection") == "close", got[:300]
    assert closed, "connection left open after %s" % name
    # Exactly one answer: nothing was read as a second request.
    assert got.count(b"HTTP/1.1 ") == 1, got[:600]
    assert total(cl) == before
    assert cl.get("/healthz").status == 200


def test_smuggled_second_request_not_queued(cl):
    """The classic: the first length covers a second request.  Refused
    whole, so the smuggled message is never queued."""
    inner = (b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: "
             b"application/json\r\nContent-Length: %d\r\n\r\n" %
             len(SMUGGLED)) + SMUGGLED
    raw = post_head("Content-Length: {n}\r\nContent-Length: %d\r\n\r\n" %
                    (len(MSG) + len(inner))) + MSG + inner
    before = total(cl)
    got, closed = exchange(cl.http_port, raw)
    assert parse(got)[0] == 400 and closed, got[:300]
    assert got.count(b"HTTP/1.1 ") == 1
    assert total(cl) == before


@pytest.mark.parametrize("method,path,allow", [
    ("DELETE", "/v1/messages", "GET, HEAD, POST"),
    ("PUT", "/v1/messages", "GET, HEAD, POST"),
    ("GET", "/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV/retry", "POST"),
    ("POST", "/healthz", "GET, HEAD"),
    ("PATCH", "/v1/stats", "GET, HEAD"),
    ("DELETE", "/v1/providers/a/disable", "POST"),
])
def test_405_with_allow(cl, method, path, allow):
    got, _ = exchange(cl.http_port, ("%s %s HTTP/1.1\r\nHost: x\r\n"
                                     "Connection: close\r\n\r\n" %
                                     (method, path)).encode())
    st, hdrs, body = parse(got)
    assert st == 405, got[:300]
    assert hdrs.get("allow") == allow, got[:300]
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_401_with_www_authenticate(make_cluster, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("k-one\n")
    keys.chmod(0o600)  # the server refuses a key file others can read
    c = make_cluster(server_extra={"api_keys_file": str(keys)})
    c.start_server()
    for auth in ("", "Authorization: Bearer wrong\r\n",
                 "Authorization: Basic azE6azI=\r\n"):
        got, closed = exchange(c.http_port, post_head(
            auth + "Content-Length: {n}\r\n\r\n") + MSG)
        st, hdrs, body = parse(got)
        assert st == 401, got[:300]
        assert hdrs.get("www-authenticate") == 'Bearer realm="shivneri"'
        assert json.loads(body)["error"]["code"] == "unauthorized"
    # Failed attempts are logged, rate limited: a burst gives few lines.
    for _ in range(50):
        exchange(c.http_port, post_head("Content-Length: {n}\r\n\r\n") + MSG)
    h.wait_for(lambda: "auth failed" in open(c.server.log_path).read(), 5,
               "an auth failure in the log")
    lines = [ln for ln in open(c.server.log_path) if "auth failed" in ln]
    assert 1 <= len(lines) <= 3, lines
    assert "k-one" not in open(c.server.log_path).read()
    r = h.http(c.http_port, "POST", "/v1/messages", body=MSG,
               headers={"Authorization": "Bearer k-one",
                        "Content-Type": "application/json"})
    assert r.status == 202, r


def test_pipelined_requests_in_order(cl):
    """Three requests in one write: three answers, in order, on one
    kept-alive connection (the POST's body read exactly by its length)."""
    raw = (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" +
           post_head("Content-Length: {n}\r\n\r\n") + MSG +
           b"GET /v1/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got, closed = exchange(cl.http_port, raw)
    answers = got.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"202", b"200"], got[:900]
    assert b'"queued"' in answers[2]


def test_expect_continue_after_checks(cl):
    """100 Continue only once the head passed: a wrong content type is
    answered 415 at once, a good request gets 100 then 202."""
    s = socket.create_connection(("127.0.0.1", cl.http_port),
                                 timeout=h.scaled(5))
    try:
        s.sendall(("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: "
                   "application/json\r\nExpect: 100-continue\r\n"
                   "Content-Length: %d\r\n\r\n" % len(MSG)).encode())
        got = b""
        while b"\r\n\r\n" not in got:
            d = s.recv(4096)
            assert d, got
            got += d
        assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got
        s.sendall(MSG)
        got = got[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
        while b"}" not in got:
            d = s.recv(4096)
            assert d, got
            got += d
        assert parse(got)[0] == 202, got
    finally:
        s.close()
    got, _ = exchange(cl.http_port, (
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain"
        "\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n").encode())
    assert parse(got)[0] == 415 and b"100 Continue" not in got, got
