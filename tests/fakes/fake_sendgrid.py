"""A stand-in for SendGrid's v3 Mail Send (POST /v3/mail/send) and scopes.

It checks what SendGrid checks (PROVIDERS.md section 2): the Bearer key
(401 with SendGrid's error shape otherwise), a JSON body under 30 MB with
1 to 1,000 personalizations each with a non-empty `to` of {email, name},
at most 1,000 recipients in all and no address twice, a `from` with an
email, a subject, `content` of non-empty {type, value} with text/plain
before text/html, attachments with base64 `content` and a `filename`,
`reply_to` and `reply_to_list` not both, `headers` of strings none of
which SendGrid reserves.  It answers 202 with an empty body and an
X-Message-Id header, or 400 {"errors": [{"message", "field", "help"}]}.
GET /v3/scopes, the probe, answers {"scopes": [...]} with the key (401
like the rest without it); `probes` counts them, answered or not.
Modes (fakelib): 503, 429 (with X-RateLimit-Reset), 401, slow, hang,
reject (a 400 for the addresses in `reject`).  `limit` (bytes of the
request body, default SendGrid's 30 MB) makes it a provider with a
smaller limit: a longer body, read whole, gets 413 in SendGrid's error
shape; `too_large` counts them.  Run by hand:
fake_sendgrid.py --port 8026 --key KEY [--mode 503].
"""

import argparse
import base64
import binascii
import json
import os
import re
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakelib  # noqa: E402

_ADDR = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+$")
RESERVED = {"x-sg-id", "x-sg-eid", "received", "dkim-signature",
            "content-type", "content-transfer-encoding", "to", "from",
            "subject", "reply-to", "cc", "bcc"}


class Invalid(Exception):
    def __init__(self, message, field=None):
        super().__init__(message)
        self.field = field


def _addr(o, field):
    if not isinstance(o, dict) or not isinstance(o.get("email"), str) or \
            not _ADDR.match(o["email"]):
        raise Invalid("Does not contain a valid address.", field)
    if "name" in o and not isinstance(o["name"], str):
        raise Invalid("The name must be a string.", field)
    return o["email"].lower()


def check(body):
    """Raises Invalid as SendGrid's validation would."""
    pers = body.get("personalizations")
    if not isinstance(pers, list) or not 1 <= len(pers) <= 1000:
        raise Invalid("The personalizations field is required and must "
                      "have at least one personalization.",
                      "personalizations")
    seen, total = set(), 0
    for i, p in enumerate(pers):
        if not isinstance(p.get("to"), list) or not p["to"]:
            raise Invalid("The to array is required for all "
                          "personalization objects, and must have at least "
                          "one email object with a valid email address.",
                          "personalizations.%d.to" % i)
        for kind in ("to", "cc", "bcc"):
            for a in p.get(kind, []):
                e = _addr(a, "personalizations.%d.%s" % (i, kind))
                if e in seen:
                    raise Invalid("Each email address in the "
                                  "personalization block should be unique "
                                  "between to, cc, and bcc.",
                                  "personalizations.%d" % i)
                seen.add(e)
                total += 1
    if total > 1000:
        raise Invalid("too many recipients", "personalizations")
    _addr(body.get("from"), "from.email")
    if "reply_to" in body and "reply_to_list" in body:
        raise Invalid("reply_to and reply_to_list cannot both be set",
                      "reply_to")
    if "reply_to" in body:
        _addr(body["reply_to"], "reply_to")
    if not body.get("subject") and not all(p.get("subject") for p in pers):
        raise Invalid("The subject is required.", "subject")
    content = body.get("content")
    if not isinstance(content, list) or not content:
        raise Invalid("Unless a valid template_id is provided, the content "
                      "parameter is required.", "content")
    types = []
    for c in content:
        if not isinstance(c.get("type"), str) or \
                not isinstance(c.get("value"), str) or not c["value"]:
            raise Invalid("content needs a type and a non-empty value",
                          "content")
        types.append(c["type"])
    if "text/plain" in types and types.index("text/plain") != 0:
        raise Invalid("The text/plain content type must be first.",
                      "content")
    for i, a in enumerate(body.get("attachments", [])):
        if not a.get("filename"):
            raise Invalid("The attachment filename parameter is required.",
                          "attachments.%d.filename" % i)
        try:
            base64.b64decode(a.get("content", ""), validate=True)
        except (binascii.Error, TypeError):
            raise Invalid("The attachment content must be base64 encoded.",
                          "attachments.%d.content" % i)
        if a.get("disposition", "attachment") not in ("attachment",
                                                      "inline"):
            raise Invalid("bad disposition", "attachments.%d" % i)
    headers = body.get("headers", {})
    if not isinstance(headers, dict):
        raise Invalid("headers must be an object", "headers")
    for k, v in headers.items():
        if k.lower() in RESERVED:
            raise Invalid("The %s header is reserved." % k, "headers")
        if not isinstance(v, str):
            raise Invalid("header values must be strings", "headers")
    return seen


class FakeSendGrid(fakelib.FakeServer):
    def __init__(self, key, limit=30 * 1024 * 1024, **kw):
        super().__init__(**kw)
        self.key = key
        self.limit = limit
        self.too_large = 0  # 413s answered for a body over limit
        self.probes = 0  # GET /v3/scopes requests seen

    def error(self, status, message, field=None):
        return status, {"Content-Type": "application/json"}, json.dumps(
            {"errors": [{"message": message, "field": field,
                         "help": None}]}).encode()

    def max_body(self):
        return 30 * 1024 * 1024

    def handle(self, req):
        probe = req.path == "/v3/scopes" and req.method == "GET"
        with self.lock:
            self.probes += probe
        if req.headers.get("Authorization") != "Bearer " + self.key or \
                self.mode == "401":
            return self.error(401, "The provided authorization grant is "
                              "invalid, expired, or revoked")
        if probe:
            return 200, {"Content-Type": "application/json"}, \
                b'{"scopes":["mail.send"]}'
        if req.path != "/v3/mail/send" or req.method != "POST":
            return self.error(404, "not found")
        if self.mode == "429":
            st, hd, b = self.error(429, "too many requests")
            hd.update({"X-RateLimit-Limit": "600",
                       "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset":
                           str(int(time.time()) + int(self.retry_after))})
            return st, hd, b
        ctl = self.control()
        if ctl is not None:
            return ctl
        if len(req.body) > self.limit:
            with self.lock:
                self.too_large += 1
            return self.error(413, "The JSON payload you have included in "
                              "your request is too large.")
        if not (req.headers.get("Content-Type") or "").startswith(
                "application/json"):
            return self.error(415, "Content-Type should be "
                              "application/json.")
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict):
                raise Invalid("The request body must be an object.")
            rcpts = check(body)
        except ValueError:
            return self.error(400, "Bad Request")
        except Invalid as e:
            return self.error(400, str(e), e.field)
        bad = rcpts & self.reject
        if bad or (self.mode == "reject" and not self.reject):
            return self.error(400, "Does not contain a valid address.",
                              "personalizations.0.to")
        mid = uuid.uuid4().hex[:22]
        with self.lock:
            self.received.append({"body": body, "id": mid})
        return 202, {"X-Message-Id": mid}, b""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", required=True)
    ap.add_argument("--mode", default="ok", choices=fakelib.MODES)
    a = ap.parse_args()
    f = FakeSendGrid(a.key, mode=a.mode).start(a.port)
    print(f.base_url, flush=True)
    try:
        f.thread.join()
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    main()
