"""Shared pieces of the provider stand-ins (tests/fakes/fake_*.py).

A stand-in is a small threaded HTTP server on 127.0.0.1 that checks a
request the way the real API does and answers in that API's shape.  Tests
run it inside the pytest process (FakeServer.start()) and read what it
received; a person can run it by hand (fake_NAME.py --port N).  Its mode
says how to answer the next requests, set from the test (fake.mode = ...)
or over HTTP (POST /_fake/mode {"mode": "503"}): ok, 503, 502empty (a
502 with no body at all, as a proxy in front of the API answers), 429 (with
Retry-After), 401, slow (answers after `delay` seconds), hang (never
answers until the server stops), reset (reads the request, then closes
the connection with a TCP RST), reject (a 400 for the recipients in
`reject`).  Every wait is bounded; nothing here reaches the network beyond
the loopback.

TLS: make_certs(folder) makes, with the openssl command, a CA of its own
and a certificate for 127.0.0.1 (an IP SAN) signed by it, under the test's
folder (no key is ever committed); start(tls=(cert, key)) then serves
https (HTTP/1.1 by ALPN), base_url says https, and handshakes a client
refused are counted in tls_failures (the request never came);
handshake_delay holds each handshake that long, as a far API's round
trips do (connections that clients open meanwhile show).  inflight
and max_inflight count requests inside handle() at once.

HTTP/2: start(tls=..., h2=True) offers h2 by ALPN (http/1.1 still for a
client that wants it) and serves an h2 connection with Debian's python3-h2
(the framing, HPACK and flow control are that library's): each stream's
request goes to the same handle() in a thread of its own, so the streams
of one connection are answered concurrently, with :authority as Host.
h2_connections counts the connections that spoke h2 and max_streams the
most requests in flight at once on any one connection.
"""

import email.parser
import email.policy
import http.server
import json
import os
import select
import socket
import socketserver
import ssl
import struct
import subprocess
import threading

MODES = ("ok", "503", "502empty", "429", "401", "slow", "hang", "reset",
         "reject")
# control()'s status for "reset": the connection is closed with a TCP RST
# after the request was read, so no answer can come.
RESET = -1
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

    def handle_error(self, request, client_address):
        pass  # a peer gone mid-request is the tests' business, not noise


def make_certs(folder, prefix=""):
    """Writes PREFIXca.pem, PREFIXserver.pem and PREFIXserver.key in folder
    with openssl: a CA and a server certificate for 127.0.0.1 (IP SAN) and
    localhost that it signed.  Returns (ca, cert, key) paths.  Called
    twice with two prefixes it makes two CAs that trust nothing of the
    other's."""
    def path(name):
        return os.path.join(folder, prefix + name)
    ca_key, ca = path("ca.key"), path("ca.pem")
    key, csr, cert = path("server.key"), path("server.csr"), \
        path("server.pem")
    ext = path("server.ext")
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
        "-out", ca, "-days", "2", "-subj", "/CN=shivneri test CA " + prefix)
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
        "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext)
    return ca, cert, key


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
        self.tls_failures = 0  # handshakes that did not complete
        self.handshake_delay = 0.0  # seconds before each TLS handshake
        self.h2_connections = 0
        self.max_streams = 0  # most requests at once on one h2 connection
        self.inflight = 0
        self.max_inflight = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = None
        self.thread = None

    # -- life

    def start(self, port=0, tls=None, h2=False):
        """Serves on 127.0.0.1:port (0: a free one); tls=(cert, key) for
        https; h2 offers HTTP/2 over it too."""
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, like the APIs
            timeout = HANG_MAX_S  # bounds a silent peer's handshake too

            def setup(self):
                if tls is not None:
                    # Here, in the connection's thread: a client that
                    # refuses our certificate stalls nobody else.
                    try:
                        self.request.settimeout(10)
                        # A far API's round trips, as a test sets them.
                        fake.stopping.wait(fake.handshake_delay)
                        self.request.do_handshake()
                    except (OSError, ssl.SSLError):
                        with fake.lock:
                            fake.tls_failures += 1
                        raise
                super().setup()
                with fake.lock:
                    fake.connections += 1

            def handle(self):
                if tls is not None and \
                        self.request.selected_alpn_protocol() == "h2":
                    _H2Conn(fake, self.request).run()
                else:
                    super().handle()

            def log_message(self, fmt, *args):  # quiet
                pass

            def _any(self):
                fake._serve(self)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = _Server(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = "http://127.0.0.1:%d" % self.port
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(tls[0], tls[1])
            ctx.set_alpn_protocols(["h2", "http/1.1"] if h2
                                   else ["http/1.1"])
            self.httpd.socket = ctx.wrap_socket(
                self.httpd.socket, server_side=True,
                do_handshake_on_connect=False)
            self.base_url = "https://127.0.0.1:%d" % self.port
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
        status, headers, out = self._handle_counted(req)
        if status is None:  # hang: hold the request, answer nothing
            self.stopping.wait(HANG_MAX_S)
            h.close_connection = True
            return
        if status == RESET:
            # SO_LINGER 0: close() sends RST, not FIN.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                    struct.pack("ii", 1, 0))
            h.close_connection = True
            h.connection.close()
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

    def _handle_counted(self, req):
        """handle(req), counted in requests and inflight."""
        with self.lock:
            self.requests += 1
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return self.handle(req)
        finally:
            with self.lock:
                self.inflight -= 1

    def max_body(self):
        return 25 * 1024 * 1024

    def control(self):
        """The answer the mode imposes before any check of the request,
        as (status, headers, body), or None to go on."""
        m = self.mode
        if m == "503":
            return self.error(503, "Service Unavailable")
        if m == "502empty":
            return 502, {}, b""
        if m == "429":
            st, hd, b = self.error(429, "Too Many Requests")
            hd["Retry-After"] = self.retry_after
            return st, hd, b
        if m == "hang":
            return None, {}, b""
        if m == "reset":
            return RESET, {}, b""
        if m == "slow":
            self.stopping.wait(self.delay)
        return None

    def error(self, status, message):
        return status, {"Content-Type": "application/json"}, \
            json.dumps({"message": message}).encode()


class _H2Conn:
    """One HTTP/2 connection of a stand-in, on the connection's thread:
    reads frames, hands each complete request to a thread of its own and
    writes the answers.  The h2 state machine and the socket are shared by
    those threads under one lock; every wait is bounded (HANG_MAX_S)."""

    def __init__(self, fake, sock):
        import h2.config
        import h2.connection
        self.fake = fake
        self.sock = sock
        self.wlock = threading.Lock()
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False,
                                             header_encoding="utf-8"))
        self.streams = {}  # id -> [headers, bytearray body]
        self.open = 0  # requests being answered

    def _flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def run(self):
        import h2.events
        with self.fake.lock:
            self.fake.h2_connections += 1
        self.sock.settimeout(10)  # a peer that stops reading
        with self.wlock:
            self.conn.initiate_connection()
            self._flush()
        while not self.fake.stopping.is_set():
            # Polled, to notice stop(); TLS may hold decrypted bytes
            # that select() cannot see.
            if self.sock.pending() == 0 and \
                    not select.select([self.sock], [], [], 0.2)[0]:
                continue
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            with self.wlock:
                events = self.conn.receive_data(data)
                for ev in events:
                    if isinstance(ev, h2.events.RequestReceived):
                        self.streams[ev.stream_id] = [ev.headers,
                                                      bytearray()]
                    elif isinstance(ev, h2.events.DataReceived):
                        st = self.streams.get(ev.stream_id)
                        if st is not None:
                            st[1] += ev.data
                        self.conn.acknowledge_received_data(
                            ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.StreamEnded):
                        self._start(ev.stream_id)
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        self._flush()
                        return
                self._flush()

    def _start(self, sid):
        """Under wlock: answers stream sid from a thread of its own."""
        headers, body = self.streams.pop(sid, (None, None))
        if headers is None:
            return
        self.open += 1
        with self.fake.lock:
            self.fake.max_streams = max(self.fake.max_streams, self.open)
        threading.Thread(target=self._answer, args=(sid, headers,
                                                    bytes(body)),
                         daemon=True).start()

    def _answer(self, sid, headers, body):
        import http.client
        pseudo = {k: v for k, v in headers if k.startswith(":")}
        msg = http.client.HTTPMessage()
        msg["Host"] = pseudo.get(":authority", "")
        for k, v in headers:
            if not k.startswith(":"):
                msg[k] = v
        req = Request(pseudo.get(":method"), pseudo.get(":path"), msg, body)
        try:
            if len(body) > self.fake.max_body():
                status, hd, out = self.fake.error(413, "request too large")
            else:
                status, hd, out = self.fake._handle_counted(req)
            if status is None:  # hang: answer nothing
                self.fake.stopping.wait(HANG_MAX_S)
                return
            if status == RESET:  # the stream, not the whole connection
                with self.wlock:
                    self.conn.reset_stream(sid)
                    self._flush()
                return
            self._send(sid, status, hd, out)
        finally:
            with self.wlock:
                self.open -= 1

    def _send(self, sid, status, headers, body):
        hd = [(":status", str(status))]
        hd += [(k.lower(), str(v)) for k, v in headers.items()]
        hd.append(("content-length", str(len(body))))
        try:
            with self.wlock:
                self.conn.send_headers(sid, hd, end_stream=not body)
                # The answers are small: within the initial windows.
                for i in range(0, len(body), 16384):
                    self.conn.send_data(sid, body[i:i + 16384],
                                        end_stream=i + 16384 >= len(body))
                self._flush()
        except Exception:  # noqa: BLE001 - a stream or peer gone
            pass


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
