"""A stand-in for Amazon SES API v2 SendEmail and GetAccount, on 127.0.0.1.

It checks what SES checks before it sends: the AWS Signature Version 4 of
every request (recomputed here with hashlib and hmac from AWS's
description of the scheme, independently of the C signer), the key id, the
clock skew (15 minutes), the content type, the JSON shape of a Raw
SendEmail, and that its addresses are 7-bit ASCII (SES has no SMTPUTF8: a
non-ASCII domain must come as Punycode, a local part as ASCII; each is a
400 BadRequestException otherwise).  It answers as SES does: 200 {"MessageId": ...}, or an error
with its type in x-amzn-ErrorType and {"__type", "message"} in the body.

Its mode says how to answer valid requests (fake.mode = ... from a test):
ok, throttle429 (TooManyRequestsException), throttle400
(ThrottlingException), quota (ThrottlingException "Daily message quota
exceeded"), noid (200 without a MessageId), reject (MessageRejected 400),
suspended
(AccountSuspendedException 400), 500 (InternalFailure), slow (accepted
after `delay` seconds), hang (no answer until stop(), bounded).  With
gate = N, each accepted SendEmail is held until N are held at once (or
GATE_MAX_S passed), then all are answered: a test that sees them all
answered knows that N requests were in flight together.  A bad signature is always a 403, whatever the
mode.  What was accepted is in fake.received: dicts with "from", "to" and
"raw" (the decoded MIME bytes).  The HTTP plumbing is fakelib's; the SES
modes are answered here (fakelib's generic ones do not speak SES errors).

GetAccount (GET /v2/email/account, the connector's probe) is signed and
checked like a send and counted in fake.probes; it answers SendQuota and
SendingEnabled as SES does: SendingEnabled false with EnforcementStatus
SHUTDOWN in mode suspended, the quota spent in mode quota, InternalFailure
in mode 500, nothing in mode hang, a healthy account otherwise.

With token= set (temporary credentials) every request must carry that
X-Amz-Security-Token among its signed headers; without it, a request that
carries one is refused, as AWS refuses a token with long-term keys.
"""

import base64
import datetime
import hashlib
import hmac
import json
import os
import posixpath
import sys
import threading
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakelib  # noqa: E402

MODES = ("ok", "throttle429", "throttle400", "quota", "noid", "reject",
         "suspended", "500", "slow", "hang")
BODY_MAX = 41 * 1024 * 1024
SKEW_S = 15 * 60
GATE_MAX_S = 10


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


class FakeSes(fakelib.FakeServer):
    def __init__(self, access_key_id, secret, region="us-east-1",
                 token=None, **kw):
        super().__init__(**kw)
        self.akid = access_key_id
        self.secret = secret
        self.region = region
        self.token = token
        self.probes = 0  # GetAccount requests, signed right or not
        self.gate = 0
        self.gated = 0  # SendEmail requests held at the gate now
        self.gate_cv = threading.Condition(self.lock)
        self.errors = []  # (status, type, message) of refused requests

    def max_body(self):
        return BODY_MAX

    def _error(self, status, etype, message, headers=None):
        with self.lock:
            self.errors.append((status, etype, message))
        hd = {"Content-Type": "application/json",
              "x-amzn-RequestId": str(uuid.uuid4()),
              "x-amzn-ErrorType": etype + ":http://internal/"}
        hd.update(headers or {})
        return status, hd, json.dumps({"__type": etype,
                                       "message": message}).encode()

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
        tok = headers_get(headers, "x-amz-security-token")
        if tok != self.token:
            return 403, "UnrecognizedClientException", \
                "The security token included in the request is invalid."
        if tok is not None and "x-amz-security-token" not in signed:
            return 403, "SignatureDoesNotMatch", \
                "x-amz-security-token is not among the signed headers"
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

    def handle(self, req):
        headers = list(req.headers.items())
        probe = req.method == "GET" and req.path == "/v2/email/account"
        if probe:
            with self.lock:
                self.probes += 1
        err = self._auth_error(req.method, req.path, headers, req.body)
        if err is not None:
            return self._error(*err)
        if probe:
            return self._account()
        if req.method != "POST" or req.path != "/v2/email/outbound-emails":
            return self._error(404, "NotFoundException", "no such resource")
        if headers_get(headers, "content-type") != "application/json":
            return self._error(400, "BadRequestException", "Content-Type")
        why = self._shape_error(req.body)
        if why is None:
            why = self._address_error(json.loads(req.body))
        if why is not None:
            return self._error(400, "BadRequestException", why)
        return self._answer(json.loads(req.body))

    @staticmethod
    def _address_error(req):
        """SES's refusal of a non-ASCII address, or None."""
        addrs = [req.get("FromEmailAddress") or ""]
        addrs += req["Destination"]["ToAddresses"]
        for a in addrs:
            local, _, domain = a.rpartition("@")
            if not domain.isascii():
                return "Domain contains illegal character"
            if not local.isascii():
                return "Local address contains control or whitespace"
        return None

    def _hold(self):
        """Waits until `gate` requests wait here, bounded by GATE_MAX_S."""
        with self.gate_cv:
            self.gated += 1
            self.gate_cv.notify_all()
            self.gate_cv.wait_for(lambda: self.gated >= self.gate
                                  or self.stopping.is_set(), GATE_MAX_S)

    def _account(self):
        """GetAccount's answer in the current mode."""
        mode = self.mode
        if mode == "500":
            return self._error(500, "InternalFailure", "internal failure")
        if mode == "hang":
            return None, {}, b""
        sent = 200.0 if mode == "quota" else 3.0
        out = {"DedicatedIpAutoWarmupEnabled": False,
               "EnforcementStatus":
                   "SHUTDOWN" if mode == "suspended" else "HEALTHY",
               "ProductionAccessEnabled": True,
               "SendQuota": {"Max24HourSend": 200.0, "MaxSendRate": 1.0,
                             "SentLast24Hours": sent},
               "SendingEnabled": mode != "suspended"}
        return 200, {"Content-Type": "application/json",
                     "x-amzn-RequestId": str(uuid.uuid4())}, \
            json.dumps(out).encode()

    def _answer(self, req):
        mode = self.mode
        if mode == "throttle429":
            return self._error(429, "TooManyRequestsException",
                               "Too many requests", {"Retry-After": "3"})
        if mode == "throttle400":
            return self._error(400, "ThrottlingException",
                               "Maximum sending rate exceeded.")
        if mode == "reject":
            return self._error(400, "MessageRejected",
                               "Email address is not verified.")
        if mode == "quota":
            return self._error(400, "ThrottlingException",
                               "Daily message quota exceeded.")
        if mode == "noid":
            return 200, {"Content-Type": "application/json"}, b"{}"
        if mode == "suspended":
            return self._error(400, "AccountSuspendedException",
                               "Account suspended")
        if mode == "500":
            return self._error(500, "InternalFailure", "internal failure")
        if mode == "hang":
            return None, {}, b""
        if mode == "slow":
            self.stopping.wait(self.delay)
        if self.gate > 0:
            self._hold()
        raw = base64.b64decode(req["Content"]["Raw"]["Data"])
        with self.lock:
            self.received.append({
                "from": req.get("FromEmailAddress"),
                "to": req["Destination"]["ToAddresses"],
                "raw": raw})
        return 200, {"Content-Type": "application/json",
                     "x-amzn-RequestId": str(uuid.uuid4())}, \
            json.dumps({"MessageId": "ses-" + uuid.uuid4().hex}).encode()


def headers_get(headers, name):
    vals = [v for k, v in headers if k.lower() == name]
    return ",".join(vals) if vals else None
