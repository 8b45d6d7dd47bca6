"""A stand-in for Brevo's POST /v3/smtp/email and GET /v3/account.

It checks what Brevo checks (PROVIDERS.md section 7): the api-key header
(401 {"code": "unauthorized", "message": "Key not found"} otherwise),
Content-Type application/json, a JSON object with a `sender` {email,
name}, a non-empty `to` and optional `cc`, `bcc` of {email, name}, a
`replyTo` {email, name}, a `subject`, an `htmlContent` or a `textContent`,
`headers` of strings, `attachment` [{name, content base64}].  It answers
201 {"messageId": "<...@smtp-relay.mailin.fr>"}, or {"code", "message"}
with 400 (invalid_parameter, missing_parameter).  Modes (fakelib): 503,
429 (with x-sib-ratelimit-limit, -remaining and -reset, the seconds in
`retry_after`, and no Retry-After), 401, slow, hang, reject (a 400
invalid_parameter for the addresses in `reject`), and Brevo's own: credit
(402 not_enough_credits) and sender (400 unauthorized: the sender is not
validated).  `answer` = (status, JSON) makes every send answer that.
GET /v3/account is counted in `probes`, answered or not.
Run by hand: fake_brevo.py --port 8029 --key KEY.
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

MODES = fakelib.MODES + ("credit", "sender")
_ADDR = re.compile(r"^[^@\s<>,\"]+@[^@\s<>,\"]+$")


class Invalid(Exception):
    def __init__(self, message, code="invalid_parameter"):
        super().__init__(message)
        self.code = code


def _contact(v, field):
    """The address of an {email, name} object, lower-cased."""
    if not isinstance(v, dict) or set(v) - {"email", "name"}:
        raise Invalid("%s is not valid" % field)
    a = v.get("email")
    if not isinstance(a, str) or not _ADDR.match(a):
        raise Invalid("%s.email is not valid" % field)
    if "name" in v and not isinstance(v["name"], str):
        raise Invalid("%s.name is not valid" % field)
    return a.lower()


def check(body):
    """The recipients, or raises Invalid as Brevo's validation would."""
    if "sender" not in body:
        raise Invalid("sender is missing", "missing_parameter")
    _contact(body["sender"], "sender")
    if not body.get("to"):
        raise Invalid("to is missing", "missing_parameter")
    rcpts = []
    for f in ("to", "cc", "bcc"):
        v = body.get(f, [])
        if not isinstance(v, list):
            raise Invalid("%s is not valid" % f)
        rcpts += [_contact(x, f) for x in v]
    if "replyTo" in body:
        _contact(body["replyTo"], "replyTo")
    if not isinstance(body.get("subject"), str) or not body["subject"]:
        raise Invalid("subject is missing", "missing_parameter")
    if not body.get("htmlContent") and not body.get("textContent"):
        raise Invalid("htmlContent is missing", "missing_parameter")
    hd = body.get("headers", {})
    if not isinstance(hd, dict) or \
            not all(isinstance(x, str) for x in hd.values()):
        raise Invalid("headers is not valid")
    for a in body.get("attachment", []):
        if not isinstance(a, dict) or not a.get("name"):
            raise Invalid("attachment name is missing", "missing_parameter")
        try:
            base64.b64decode(a.get("content", ""), validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise Invalid("attachment content is not valid base64")
    return rcpts


class FakeBrevo(fakelib.FakeServer):
    def __init__(self, key, **kw):
        super().__init__(**kw)
        self.key = key
        self.probes = 0
        self.answer = None  # (status, JSON) for every send, if set

    def error(self, status, message, code="bad_request"):
        return status, {"Content-Type": "application/json"}, json.dumps(
            {"code": code, "message": message}).encode()

    def max_body(self):
        return 20 * 1024 * 1024

    def control(self):
        if self.mode == "429":
            st, hd, b = self.error(429, "Too many requests",
                                   "too_many_requests")
            hd.update({"x-sib-ratelimit-limit": "10",
                       "x-sib-ratelimit-remaining": "0",
                       "x-sib-ratelimit-reset": self.retry_after})
            return st, hd, b
        return super().control()

    def handle(self, req):
        if req.path == "/v3/account" and req.method == "GET":
            with self.lock:
                self.probes += 1
        if req.headers.get("api-key") != self.key or self.mode == "401":
            return self.error(401, "Key not found", "unauthorized")
        if req.path == "/v3/account" and req.method == "GET":
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"email": "owner@example.com", "companyName": "fake",
                 "plan": [{"type": "free", "credits": 300}]}).encode()
        if req.path != "/v3/smtp/email" or req.method != "POST":
            return self.error(404, "Not found", "document_not_found")
        if self.answer is not None:
            st, body = self.answer
            return st, {"Content-Type": "application/json"}, \
                json.dumps(body).encode()
        ctl = self.control()
        if ctl is not None:
            return ctl
        if self.mode == "credit":
            return self.error(402, "You don't have enough credit to send "
                              "this email", "not_enough_credits")
        if req.headers.get("Content-Type") != "application/json":
            return self.error(415, "Content-Type must be application/json")
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict):
                raise Invalid("the body is not an object")
            rcpts = check(body)
        except ValueError:
            return self.error(400, "Input must be a valid JSON object")
        except Invalid as e:
            return self.error(400, str(e), e.code)
        if self.mode == "sender":
            return self.error(400, "Sending has been rejected because the "
                              "sender you used %s is not valid. Validate "
                              "your sender or authenticate your domain" %
                              body["sender"]["email"], "unauthorized")
        if set(rcpts) & self.reject or (self.mode == "reject" and
                                        not self.reject):
            return self.error(400, "email is not valid in to",
                              "invalid_parameter")
        mid = "<%s.%d@smtp-relay.mailin.fr>" % (
            time.strftime("%Y%m%d%H%M%S"), uuid.uuid4().int % 10 ** 11)
        with self.lock:
            self.received.append({"body": body, "id": mid,
                                  "headers": dict(req.headers)})
        return 201, {"Content-Type": "application/json"}, json.dumps(
            {"messageId": mid}).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", required=True)
    ap.add_argument("--mode", default="ok", choices=MODES)
    a = ap.parse_args()
    f = FakeBrevo(a.key, mode=a.mode).start(a.port)
    print(f.base_url, flush=True)
    try:
        f.thread.join()
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    main()
