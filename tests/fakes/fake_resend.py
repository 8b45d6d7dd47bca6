"""A stand-in for Resend's POST /emails.

It checks what Resend checks (PROVIDERS.md section 8): the Bearer key (401
missing_api_key / 403 invalid_api_key otherwise), a JSON object with a
`from`, a `to` (string or array, at most 50, as `cc` and `bcc`), a
subject, a `text` or an `html`, `headers` of strings, attachments with
base64 `content` and a `filename`.  It honours the Idempotency-Key (at
most 256 characters): a key seen before with the same body answers the
same id and sends nothing again; with another body, 409.  It answers 200
{"id"}, or {"statusCode", "message", "name"}.  Modes (fakelib): 503, 429
(rate_limit_exceeded, with retry-after), quota (429
daily_quota_exceeded), 401, slow, hang, reject (a 422 for the addresses
in `reject`).  Run by hand: fake_resend.py --port 8028 --key KEY.
"""

import argparse
import base64
import binascii
import json
import os
import re
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakelib  # noqa: E402

_ADDR = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+$")
_NAMED = re.compile(r"^(?:.*<([^<>]+)>|([^<>]+))$")


class Invalid(Exception):
    pass


def _one(s, field):
    m = _NAMED.match(s.strip()) if isinstance(s, str) else None
    a = (m.group(1) or m.group(2)).strip() if m else ""
    if not _ADDR.match(a):
        raise Invalid("Invalid `%s` field." % field)
    return a.lower()


def _list(v, field):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or len(v) > 50:
        raise Invalid("Invalid `%s` field." % field)
    return [_one(x, field) for x in v]


def check(body):
    """The recipients, or raises Invalid as Resend's validation would."""
    _one(body.get("from"), "from")
    if not body.get("to"):
        raise Invalid("Missing `to` field.")
    rcpts = []
    for f in ("to", "cc", "bcc"):
        if f in body:
            rcpts += _list(body[f], f)
    if "reply_to" in body:
        _list(body["reply_to"], "reply_to")
    if not isinstance(body.get("subject"), str):
        raise Invalid("Missing `subject` field.")
    if not body.get("text") and not body.get("html"):
        raise Invalid("Missing `html` or `text` field.")
    hd = body.get("headers", {})
    if not isinstance(hd, dict) or \
            not all(isinstance(v, str) for v in hd.values()):
        raise Invalid("Invalid `headers` field.")
    for a in body.get("attachments", []):
        if not a.get("filename"):
            raise Invalid("Missing attachment `filename`.")
        try:
            base64.b64decode(a.get("content", ""), validate=True)
        except (binascii.Error, TypeError):
            raise Invalid("Invalid attachment `content`.")
    return rcpts


class FakeResend(fakelib.FakeServer):
    def __init__(self, key, **kw):
        super().__init__(**kw)
        self.key = key
        self.idem = {}  # Idempotency-Key -> (body bytes, id)
        self.replays = 0

    def error(self, status, message, name="application_error"):
        return status, {"Content-Type": "application/json"}, json.dumps(
            {"statusCode": status, "message": message,
             "name": name}).encode()

    def max_body(self):
        return 40 * 1024 * 1024

    def handle(self, req):
        auth = req.headers.get("Authorization")
        if auth is None:
            return self.error(401, "Missing API key in the authorization "
                              "header.", "missing_api_key")
        if auth != "Bearer " + self.key or self.mode == "401":
            return self.error(403, "API key is invalid.", "invalid_api_key")
        if req.path != "/emails" or req.method != "POST":
            return self.error(404, "not found", "not_found")
        if self.mode == "quota":
            return self.error(429, "You have reached your daily email "
                              "sending quota.", "daily_quota_exceeded")
        if self.mode == "429":
            st, hd, b = self.error(429, "Too many requests.",
                                   "rate_limit_exceeded")
            hd["retry-after"] = self.retry_after
            return st, hd, b
        ctl = self.control()
        if ctl is not None:
            return ctl
        if req.headers.get("Content-Type") != "application/json":
            return self.error(400, "Invalid content type.",
                              "validation_error")
        key = req.headers.get("Idempotency-Key")
        if key is not None and not 1 <= len(key) <= 256:
            return self.error(400, "Invalid idempotency key.",
                              "invalid_idempotency_key")
        with self.lock:
            seen = self.idem.get(key) if key is not None else None
            if seen is not None:
                if seen[0] != req.body:
                    return self.error(409, "Same idempotency key used "
                                      "with a different request payload.",
                                      "invalid_idempotent_request")
                self.replays += 1
                return 200, {"Content-Type": "application/json"}, \
                    json.dumps({"id": seen[1]}).encode()
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict):
                raise Invalid("The request body must be an object.")
            rcpts = check(body)
        except ValueError:
            return self.error(400, "Invalid JSON.", "validation_error")
        except Invalid as e:
            return self.error(422, str(e), "validation_error")
        if set(rcpts) & self.reject or (self.mode == "reject" and
                                        not self.reject):
            return self.error(422, "Invalid `to` field: refused address.",
                              "validation_error")
        mid = str(uuid.uuid4())
        with self.lock:
            if key is not None:
                self.idem[key] = (req.body, mid)
            self.received.append({"body": body, "id": mid, "raw": req.body,
                                  "headers": dict(req.headers)})
        return 200, {"Content-Type": "application/json"}, \
            json.dumps({"id": mid}).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", required=True)
    ap.add_argument("--mode", default="ok",
                    choices=fakelib.MODES + ("quota",))
    a = ap.parse_args()
    f = FakeResend(a.key, mode=a.mode).start(a.port)
    print(f.base_url, flush=True)
    try:
        f.thread.join()
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    main()
