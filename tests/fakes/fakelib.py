"""Shared pieces of the provider stand-ins (tests/fakes/fake_*.py).

A stand-in is a small threaded HTTP server on 127.0.0.1 that checks a
request the way the real API does and answers in that API's shape.  Tests
run it inside the pytest process (FakeServer.start()) and read what it
received; a person can run it by hand (fake_NAME.py --port N).  Its mode
says how to answer the next requests, set from the test (fake.mode = ...)
or over HTTP (POST /_fake/mode {"mode": "503"}): ok, 503, 429 (with
Retry-After), 401, slow (answers after `delay` seconds), hang (never
answers until the server stops), reject (a 400 for the recipients in
`reject`).  Every wait is bounded; nothing here reaches the network beyond
the loopback.
"""

import email.parser
import email.policy
import http.server
import json
import socketserver
import threading

MODES = ("ok", "503", "429", "401", "slow", "hang", "reject")
HANG_MAX_S = 60  # a hung request is released by then, or at stop()


class Request:
    """What one handler call saw: method, path, headers, body bytes."""

    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeServer:
    """Base of a stand-in: subclasses define handle(req) -> (status,
    headers dict, body bytes) and may call self.control() first."""

    def __init__(self, mode="ok", retry_after="2", delay=1.0):
        self.mode = mode
        self.retry_after = retry_after
        self.delay = delay
        self.reject = set()
        self.received = []  # what the subclass recorded
        self.requests = 0
        self.connections = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = None
        self.thread = None

    # -- life

    def start(self, port=0):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the APIs

            def setup(self):
                super().setup()
                with fake.lock:
                    fake.connections += 1

            def log_message(self, fmt, *args):  # quiet
                pass

            def _any(self):
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = _Server(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = "http://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    # -- serving

    def _serve(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        if n > self.max_body():
            self._reply(h, 413, {"Content-Type": "application/json"},
                        b'{"message":"request too large"}', close=True)
            return
        body = h.rfile.read(n) if n > 0 else b""
        req = Request(h.command, h.path, h.headers, body)
        if h.path == "/_fake/mode" and h.command == "POST":
            ctl = json.loads(body or b"{}")
            self.mode = ctl.get("mode", self.mode)
            self.reject = set(ctl.get("reject", self.reject))
            self.retry_after = str(ctl.get("retry_after", self.retry_after))
            self._reply(h, 200, {"Content-Type": "application/json"}, b"{}")
            return
        with self.lock:
            self.requests += 1
        status, headers, out = self.handle(req)
        if status is None:  # hang: hold the request, answer nothing
            self.stopping.wait(HANG_MAX_S)
            h.close_connection = True
            return
        self._reply(h, status, headers, out)

    @staticmethod
    def _reply(h, status, headers, body, close=False):
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(body)

    def max_body(self):
        return 25 * 1024 * 1024

    def control(self):
        """The answer the mode imposes before any check of the request,
        as (status, headers, body), or None to go on."""
        m = self.mode
        if m == "503":
            return self.error(503, "Service Unavailable")
        if m == "429":
            st, hd, b = self.error(429, "Too Many Requests")
            hd["Retry-After"] = self.retry_after
            return st, hd, b
        if m == "hang":
            return None, {}, b""
        if m == "slow":
            self.stopping.wait(self.delay)
        return None

    def error(self, status, message):
        return status, {"Content-Type": "application/json"}, \
            json.dumps({"message": message}).encode()


def parse_multipart(content_type, body):
    """[(name, filename or None, bytes)] of a multipart/form-data body,
    parsed with the email package; ValueError when it is not one."""
    if not content_type or not content_type.startswith("multipart/form-data"):
        raise ValueError("not multipart/form-data")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        raise ValueError("no parts")
    fields = []
    for part in msg.iter_parts():
        if part.get_content_disposition() != "form-data":
            raise ValueError("a part that is not form-data")
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise ValueError("a part without a name")
        if part.get_content_type() == "message/rfc822":
            # The email package parses such a part into a message.
            data = part.get_payload(0).as_bytes()
        else:
            data = part.get_payload(decode=True) or b""
        fields.append((name, part.get_filename(), data))
    return fields
