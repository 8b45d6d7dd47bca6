"""A stand-in for Amazon SES API v2 SendEmail, on 127.0.0.1 only.

It checks what SES checks before it sends: the AWS Signature Version 4 of
every request (recomputed here with hashlib and hmac from AWS's
description of the scheme, independently of the C signer), the key id, the
clock skew (15 minutes), the content type and the JSON shape of a Raw
SendEmail.  It answers as SES does: 200 {"MessageId": ...}, or an error
with its type in x-amzn-ErrorType and {"__type", "message"} in the body.

Its mode says how to answer valid requests (fake.mode = ... from a test):
ok, throttle429 (TooManyRequestsException), throttle400
(ThrottlingException), reject (MessageRejected 400), suspended
(AccountSuspendedException 400), 500 (InternalFailure), hang (no answer
until stop(), bounded).  A bad signature is always a 403, whatever the
mode.  What was accepted is in fake.received: dicts with "from", "to" and
"raw" (the decoded MIME bytes).
"""

import base64
import datetime
import hashlib
import hmac
import http.server
import json
import posixpath
import socketserver
import threading
import urllib.parse
import uuid

MODES = ("ok", "throttle429", "throttle400", "reject", "suspended", "500",
         "hang")
HANG_MAX_S = 60
BODY_MAX = 41 * 1024 * 1024
SKEW_S = 15 * 60


def _h(key, msg):
    return hmac.new(key, msg.encode() if isinstance(msg, str) else msg,
                    hashlib.sha256).digest()


def _quote(s):
    # RFC 3986 unreserved characters stay; everything else is %XX.
    return urllib.parse.quote(s, safe="-_.~")


def canonical_request(method, target, headers, signed, body):
    """headers: list of (name, value) as received.  signed: lower names."""
    parts = urllib.parse.urlsplit(target)
    path = parts.path or "/"
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if path.endswith("/") and norm != "/":
        norm += "/"
    cpath = "/".join(_quote(seg) for seg in norm.split("/"))
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    # Sorted by encoded name, then encoded value.
    cquery = "&".join("%s=%s" % kv for kv in sorted(
        (_quote(k), _quote(v)) for k, v in pairs))
    lines = []
    for name in signed:
        vals = [" ".join(v.split()) for k, v in headers
                if k.lower() == name]
        lines.append("%s:%s\n" % (name, ",".join(vals)))
    return "\n".join([method, cpath, cquery, "".join(lines),
                      ";".join(signed),
                      hashlib.sha256(body).hexdigest()])


def signature(secret, day, region, service, sts):
    k = _h(("AWS4" + secret).encode(), day)
    k = _h(k, region)
    k = _h(k, service)
    k = _h(k, "aws4_request")
    return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class FakeSes:
    def __init__(self, access_key_id, secret, region="us-east-1"):
        self.akid = access_key_id
        self.secret = secret
        self.region = region
        self.mode = "ok"
        self.received = []
        self.errors = []  # why requests were refused, for the test
        self.requests = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = None

    # -- life

    def start(self):
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                fake._serve(self)

            do_GET = do_PUT = do_DELETE = do_POST

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base_url = "http://127.0.0.1:%d" % self.port
        threading.Thread(target=self.httpd.serve_forever,
                         kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        self.stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()

    # -- answers

    def _reply(self, h, status, obj, etype=None, headers=None):
        out = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if etype is not None:
            h.send_header("x-amzn-ErrorType", etype + ":http://internal/")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)

    def _error(self, h, status, etype, message, headers=None):
        with self.lock:
            self.errors.append((status, etype, message))
        self._reply(h, status, {"__type": etype, "message": message},
                    etype, headers)

    # -- checks

    def _auth_error(self, method, target, headers, body):
        """None when the request is signed right, else (status, type, msg)."""
        authz = headers_get(headers, "authorization")
        if authz is None:
            return 403, "MissingAuthenticationTokenException", \
                "Missing Authentication Token"
        algo, _, rest = authz.partition(" ")
        fields = {}
        for part in rest.split(","):
            k, _, v = part.strip().partition("=")
            fields[k] = v
        if algo != "AWS4-HMAC-SHA256" or set(fields) != {
                "Credential", "SignedHeaders", "Signature"}:
            return 400, "IncompleteSignatureException", "bad Authorization"
        cred = fields["Credential"].split("/")
        if len(cred) != 5 or cred[4] != "aws4_request":
            return 400, "IncompleteSignatureException", "bad Credential"
        akid, day, region, service = cred[:4]
        if akid != self.akid:
            return 403, "UnrecognizedClientException", \
                "The security token included in the request is invalid."
        amz_date = headers_get(headers, "x-amz-date") or ""
        try:
            when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
        except ValueError:
            return 400, "IncompleteSignatureException", "bad X-Amz-Date"
        now = datetime.datetime.utcnow()
        if abs((now - when).total_seconds()) > SKEW_S:
            return 400, "RequestExpired", "Signature expired"
        if (day != amz_date[:8] or region != self.region
                or service != "ses"):
            return 403, "SignatureDoesNotMatch", "bad credential scope"
        signed = fields["SignedHeaders"].split(";")
        if (signed != sorted(signed) or "host" not in signed
                or "x-amz-date" not in signed):
            return 403, "SignatureDoesNotMatch", "bad SignedHeaders"
        creq = canonical_request(method, target, headers, signed, body)
        sts = "\n".join(["AWS4-HMAC-SHA256", amz_date,
                         "%s/%s/%s/aws4_request" % (day, region, service),
                         hashlib.sha256(creq.encode()).hexdigest()])
        want = signature(self.secret, day, region, service, sts)
        if not hmac.compare_digest(want, fields["Signature"]):
            return 403, "SignatureDoesNotMatch", \
                "The request signature we calculated does not match"
        return None

    @staticmethod
    def _shape_error(body):
        """None when body is a Raw SendEmail, else why not."""
        try:
            req = json.loads(body)
        except ValueError:
            return "body is not JSON"
        if not isinstance(req, dict):
            return "body is not an object"
        extra = set(req) - {"FromEmailAddress", "Destination", "Content",
                            "ReplyToAddresses", "EmailTags",
                            "ConfigurationSetName"}
        if extra:
            return "unknown keys %s" % sorted(extra)
        if "FromEmailAddress" in req and \
                not isinstance(req["FromEmailAddress"], str):
            return "FromEmailAddress"
        to = req.get("Destination", {}).get("ToAddresses")
        if (not isinstance(to, list) or not 1 <= len(to) <= 50
                or not all(isinstance(a, str) for a in to)):
            return "Destination.ToAddresses"
        raw = req.get("Content", {}).get("Raw", {}).get("Data")
        if not isinstance(raw, str) or set(req["Content"]) != {"Raw"}:
            return "Content.Raw.Data"
        try:
            base64.b64decode(raw, validate=True)
        except ValueError:
            return "Content.Raw.Data is not base64"
        return None

    def _serve(self, h):
        n = int(h.headers.get("Content-Length") or 0)
        if n > BODY_MAX:
            h.close_connection = True
            self._error(h, 413, "BadRequestException", "too large")
            return
        body = h.rfile.read(n) if n > 0 else b""
        with self.lock:
            self.requests += 1
        headers = list(h.headers.items())
        err = self._auth_error(h.command, h.path, headers, body)
        if err is not None:
            self._error(h, *err)
            return
        if h.command != "POST" or h.path != "/v2/email/outbound-emails":
            self._error(h, 404, "NotFoundException", "no such resource")
            return
        if headers_get(headers, "content-type") != "application/json":
            self._error(h, 400, "BadRequestException", "Content-Type")
            return
        why = self._shape_error(body)
        if why is not None:
            self._error(h, 400, "BadRequestException", why)
            return
        self._answer(h, json.loads(body))

    def _answer(self, h, req):
        mode = self.mode
        if mode == "throttle429":
            self._error(h, 429, "TooManyRequestsException",
                        "Too many requests", {"Retry-After": "3"})
        elif mode == "throttle400":
            self._error(h, 400, "ThrottlingException",
                        "Maximum sending rate exceeded.")
        elif mode == "reject":
            self._error(h, 400, "MessageRejected",
                        "Email address is not verified.")
        elif mode == "suspended":
            self._error(h, 400, "AccountSuspendedException",
                        "Account suspended")
        elif mode == "500":
            self._error(h, 500, "InternalFailure", "internal failure")
        elif mode == "hang":
            self.stopping.wait(HANG_MAX_S)
            h.close_connection = True
        else:
            raw = base64.b64decode(req["Content"]["Raw"]["Data"])
            with self.lock:
                self.received.append({
                    "from": req.get("FromEmailAddress"),
                    "to": req["Destination"]["ToAddresses"],
                    "raw": raw})
            self._reply(h, 200, {"MessageId": "ses-" + uuid.uuid4().hex})


def headers_get(headers, name):
    vals = [v for k, v in headers if k.lower() == name]
    return ",".join(vals) if vals else None
