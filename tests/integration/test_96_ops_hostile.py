"""A hostile party against the operator's surfaces.

- Webhooks: a receiver that answers 200 and then sends a page past the
  body cap, cuts its answer short, or trickles it past the timeout took
  the webhook: it is sent once, not again and again until
  webhook_max_age_s.
"""

import json
import re
import socket
import threading

import pytest

import shivneri_harness as h

def metric(c, name):
    r = c.get("/metrics")
    assert r.status == 200, r
    m = re.search(r"^%s (\S+)$" % re.escape(name), r.body.decode(), re.M)
    return float(m.group(1)) if m else None



# --- webhooks --------------------------------------------------------------


class OddReceiver:
    """A raw webhook receiver on loopback that reads each request whole,
    then answers 200 in one of three odd ways: "huge" (a body four times
    http_multi's 64 KiB cap), "cut" (a Content-Length of 100, 3 bytes,
    close), "trickle" (the head and a byte, then nothing until the
    server's webhook_timeout_ms passed; bounded by stop)."""

    def __init__(self):
        self.mode = "huge"
        self.got = []  # (webhook id, body)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.s = socket.socket()
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(64)
        self.s.settimeout(0.2)
        self.port = self.s.getsockname()[1]
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.s.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,),
                             daemon=True).start()

    def _read(self, conn):
        conn.settimeout(h.scaled(5))
        data = b""
        while b"\r\n\r\n" not in data:
            d = conn.recv(65536)
            if not d:
                return None, None
            data += d
        head, body = data.split(b"\r\n\r\n", 1)
        hdrs = {}
        for ln in head.decode("latin-1").split("\r\n")[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        while len(body) < n:
            d = conn.recv(65536)
            if not d:
                return None, None
            body += d
        return hdrs, body

    def _one(self, conn):
        try:
            hdrs, body = self._read(conn)
            if hdrs is None:
                return
            with self.lock:
                self.got.append((hdrs.get("shivneri-webhook-id"), body))
                mode = self.mode
            if mode == "huge":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 262144\r\n"
                             b"\r\n" + b"x" * 262144)
            elif mode == "cut":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                             b"\r\nabc")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                             b"\r\na")
                self.stop.wait(h.scaled(3))
        except OSError:
            pass
        finally:
            conn.close()

    def ids(self, pred):
        with self.lock:
            return [i for i, b in self.got if pred(json.loads(b))]

    def count(self, wid):
        with self.lock:
            return sum(1 for i, _ in self.got if i == wid)

    def close(self):
        self.stop.set()
        self.s.close()


@pytest.fixture(scope="module")
def odd(module_cluster_factory):
    rx = OddReceiver()
    c = module_cluster_factory(providers=("a",), spawn=True, server_extra={
        "webhook_url": "http://127.0.0.1:%d/hook" % rx.port,
        "webhook_timeout_ms": 1000, "webhook_retry_max_ms": 200})
    c.start_server()
    c.wait_state("a", "up")
    yield c, rx
    rx.close()


@pytest.mark.parametrize("mode", ["huge", "cut", "trickle"])
def test_webhook_taken_on_2xx_whatever_the_body(odd, mode):
    c, rx = odd
    rx.mode = mode
    sent0 = metric(c, "shivneri_webhooks_sent_total")
    mid = c.submit()
    c.wait_delivered([mid])

    def delivered_hook():
        return rx.ids(lambda b: b.get("id") == mid and
                      b["type"] == "message.delivered")
    wid = h.wait_for(delivered_hook, 10, "the delivered webhook")[0]
    # Sent: the counter moves and the outbox empties, with no try left.
    h.wait_for(lambda: metric(c, "shivneri_webhooks_sent_total") > sent0 and
               metric(c, "shivneri_webhook_outbox") == 0 and
               metric(c, "shivneri_webhooks_in_flight") == 0,
               10, "the webhook to count as sent (%s)" % mode)
    assert rx.count(wid) == 1, (mode, rx.count(wid))
    assert metric(c, "shivneri_webhook_failures_total") == 0
