"""A stand-in for Postmark's POST /email and GET /server.

It checks what Postmark checks (PROVIDERS.md section 4): the
X-Postmark-Server-Token header (401 ErrorCode 10 otherwise), Accept and
Content-Type application/json, a JSON object with a From, a To, at most 50
addresses in each of To, Cc and Bcc, a TextBody or an HtmlBody, Headers as
[{Name, Value}], Attachments with Name, base64 Content and ContentType.
It answers 200 {"To", "SubmittedAt", "MessageID", "ErrorCode": 0,
"Message": "OK"}, or {"ErrorCode", "Message"} with 422 (300 invalid
request, 406 inactive recipient).  Modes (fakelib): 503, 429, 401, slow,
hang, reject (a 422 ErrorCode 406 for the addresses in `reject`).  Run by
hand: fake_postmark.py --port 8027 --token TOKEN [--mode 503].
"""

import argparse
import base64
import binascii
import datetime
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
    def __init__(self, message, code=300):
        super().__init__(message)
        self.code = code


def _addresses(s, field):
    """The addresses of a comma-separated list, lower-cased."""
    if not isinstance(s, str) or not s.strip():
        raise Invalid("Invalid '%s' address: '%s'." % (field, s))
    out = []
    for part in s.split(","):
        m = _NAMED.match(part.strip())
        a = (m.group(1) or m.group(2)).strip() if m else ""
        if not _ADDR.match(a):
            raise Invalid("Invalid '%s' address: '%s'." % (field, part))
        out.append(a.lower())
    if len(out) > 50:
        raise Invalid("You may not have more than 50 %s recipients." %
                      field)
    return out


def check(body):
    """The recipients, or raises Invalid as Postmark's validation would."""
    _addresses(body.get("From"), "From")
    if "To" not in body:
        raise Invalid("Zero recipients specified")
    rcpts = []
    for f in ("To", "Cc", "Bcc"):
        if f in body:
            rcpts += _addresses(body[f], f)
    if "ReplyTo" in body:
        _addresses(body["ReplyTo"], "ReplyTo")
    if not body.get("TextBody") and not body.get("HtmlBody"):
        raise Invalid("Provide either email TextBody or HtmlBody or both.")
    for hd in body.get("Headers", []):
        if not isinstance(hd, dict) or not isinstance(hd.get("Name"), str) \
                or not isinstance(hd.get("Value"), str):
            raise Invalid("Headers must be [{Name, Value}].")
    for a in body.get("Attachments", []):
        if not a.get("Name") or not a.get("ContentType"):
            raise Invalid("Attachments need a Name and a ContentType.")
        try:
            base64.b64decode(a.get("Content", ""), validate=True)
        except (binascii.Error, TypeError):
            raise Invalid("Attachment content is not base64.")
    return rcpts


class FakePostmark(fakelib.FakeServer):
    def __init__(self, token, **kw):
        super().__init__(**kw)
        self.token = token
        self.probes = 0  # GET /server requests seen

    def error(self, status, message, code=0):
        return status, {"Content-Type": "application/json"}, json.dumps(
            {"ErrorCode": code, "Message": message}).encode()

    def max_body(self):
        return 10 * 1024 * 1024

    def handle(self, req):
        probe = req.path == "/server" and req.method == "GET"
        with self.lock:
            self.probes += probe
        if req.headers.get("X-Postmark-Server-Token") != self.token or \
                self.mode == "401":
            return self.error(401, "Request does not contain a valid "
                              "Server token.", 10)
        if probe:
            return 200, {"Content-Type": "application/json"}, \
                json.dumps({"ID": 1, "Name": "fake"}).encode()
        if req.path != "/email" or req.method != "POST":
            return self.error(404, "not found")
        ctl = self.control()
        if ctl is not None:
            return ctl
        if req.headers.get("Accept") != "application/json" or \
                req.headers.get("Content-Type") != "application/json":
            return self.error(415, "Accept and Content-Type must be "
                              "application/json.")
        try:
            body = json.loads(req.body)
            if not isinstance(body, dict):
                raise Invalid("The request body must be an object.")
            rcpts = check(body)
        except ValueError:
            return self.error(422, "Invalid JSON", 300)
        except Invalid as e:
            return self.error(422, str(e), e.code)
        if set(rcpts) & self.reject or (self.mode == "reject" and
                                        not self.reject):
            return self.error(422, "You tried to send to a recipient that "
                              "has been marked as inactive.", 406)
        mid = str(uuid.uuid4())
        with self.lock:
            self.received.append({"body": body, "id": mid,
                                  "headers": dict(req.headers)})
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"To": body["To"], "SubmittedAt": now, "MessageID": mid,
             "ErrorCode": 0, "Message": "OK"}).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--token", required=True)
    ap.add_argument("--mode", default="ok", choices=fakelib.MODES)
    a = ap.parse_args()
    f = FakePostmark(a.token, mode=a.mode).start(a.port)
    print(f.base_url, flush=True)
    try:
        f.thread.join()
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    main()
