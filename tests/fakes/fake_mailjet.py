"""A stand-in for Mailjet's Send API v3.1 (POST /v3.1/send) and GET
/v3/REST/sender.

It checks what Mailjet checks (PROVIDERS.md section 6): Basic auth API
key:secret key (401 mj-0001 otherwise), Content-Type application/json, a
JSON object {"Messages": [1..50 messages]}, each with a From {Email,
Name}, a non-empty To and optional Cc, Bcc of {Email, Name} (at most 50
recipients in all: send-0015), valid addresses (mj-0013), a TextPart or an
HTMLPart (send-0003), Headers of strings, Attachments and
InlinedAttachments with ContentType, Filename and base64 Base64Content
(and a ContentID for the inlined).  It answers 200 {"Messages": [{"Status":
"success", "CustomID", "To"|"Cc"|"Bcc": [{"Email", "MessageUUID",
"MessageID", "MessageHref"}]}]}, or 400 with the message's {"Status":
"error", "Errors": [{"ErrorIdentifier", "ErrorCode", "StatusCode",
"ErrorMessage", "ErrorRelatedTo"}]}; request-level errors are
{"ErrorIdentifier", "ErrorCode", "StatusCode", "ErrorMessage"}.  Modes
(fakelib): 503, 429 (with Retry-After), 401, slow, hang, reject (mj-0013
for the addresses in `reject`), and sender (send-0008, StatusCode 403:
the sender is not authorized, in a 400).  Addresses in `omit` are left
out of a success answer, the partial answer the connector must still take
as delivered; `answer` = (status, JSON) makes every send answer that.
GET /v3/REST/sender is counted in `probes`, answered or
not.  Run by hand: fake_mailjet.py --port 8030 --key KEY --secret SECRET.
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

MODES = fakelib.MODES + ("sender",)
RCPT_MAX = 50
_ADDR = re.compile(r"^[^@\s<>,\"]+@[^@\s<>,\"]+$")
_JSON = {"Content-Type": "application/json"}


def _err(code, status, message, related=None):
    e = {"ErrorIdentifier": str(uuid.uuid4()), "ErrorCode": code,
         "StatusCode": status, "ErrorMessage": message}
    if related is not None:
        e["ErrorRelatedTo"] = related
    return e


def _contact(v, field, errors):
    """The lower-cased address of an {Email, Name} object, or None with
    an error appended."""
    if not isinstance(v, dict) or set(v) - {"Email", "Name"} or \
            not isinstance(v.get("Name", ""), str):
        errors.append(_err("mj-0004", 400, "Type mismatch.", [field]))
        return None
    a = v.get("Email")
    if not isinstance(a, str) or not _ADDR.match(a):
        errors.append(_err("mj-0013", 400, "\"%s\" is an invalid email "
                           "address." % a, [field + ".Email"]))
        return None
    return a.lower()


def _attachments(m, key, errors, inline):
    v = m.get(key, [])
    if not isinstance(v, list):
        errors.append(_err("mj-0004", 400, "Type mismatch.", [key]))
        return
    for i, a in enumerate(v):
        need = ("ContentType", "Filename", "Base64Content") + \
            (("ContentID",) if inline else ())
        where = "%s[%d]" % (key, i)
        if not isinstance(a, dict) or \
                not all(isinstance(a.get(k), str) and a[k] for k in need):
            errors.append(_err("mj-0003", 400, "Missing mandatory "
                               "property.", [where]))
            continue
        try:
            base64.b64decode(a["Base64Content"], validate=True)
        except (binascii.Error, ValueError):
            errors.append(_err("mj-0008", 400, "Invalid Base64 content.",
                               [where + ".Base64Content"]))


def check(m):
    """(recipients by field, errors) of one message, as Mailjet's
    validation would find them."""
    errors, rcpts = [], {}
    if not isinstance(m, dict):
        return rcpts, [_err("mj-0004", 400, "Type mismatch.", ["Messages"])]
    if "From" not in m:
        errors.append(_err("mj-0003", 400, "Missing mandatory property.",
                           ["From"]))
    else:
        _contact(m["From"], "From", errors)
    if not m.get("To"):
        errors.append(_err("mj-0003", 400, "Missing mandatory property.",
                           ["To"]))
    for f in ("To", "Cc", "Bcc"):
        v = m.get(f, [])
        if not isinstance(v, list):
            errors.append(_err("mj-0004", 400, "Type mismatch.", [f]))
            continue
        rcpts[f] = [_contact(x, "%s[%d]" % (f, i), errors)
                    for i, x in enumerate(v)]
    if sum(len(x) for x in rcpts.values()) > RCPT_MAX:
        errors.append(_err("send-0015", 400, "Total number of recipients "
                           "is more than %d." % RCPT_MAX, ["To"]))
    if "ReplyTo" in m:
        _contact(m["ReplyTo"], "ReplyTo", errors)
    if not m.get("TextPart") and not m.get("HTMLPart"):
        errors.append(_err("send-0003", 400, "At least \"HTMLPart\", "
                           "\"TextPart\" or \"TemplateID\" must be "
                           "provided.", ["TextPart", "HTMLPart"]))
    hd = m.get("Headers", {})
    if not isinstance(hd, dict) or \
            not all(isinstance(x, str) for x in hd.values()):
        errors.append(_err("mj-0004", 400, "Type mismatch.", ["Headers"]))
    _attachments(m, "Attachments", errors, False)
    _attachments(m, "InlinedAttachments", errors, True)
    return rcpts, errors


class FakeMailjet(fakelib.FakeServer):
    def __init__(self, key, secret, **kw):
        super().__init__(**kw)
        self.auth = "Basic " + base64.b64encode(
            ("%s:%s" % (key, secret)).encode()).decode()
        self.probes = 0
        self.answer = None  # (status, JSON) for every send, if set
        self.omit = set()
        self.next_id = 288230376151711744

    def error(self, status, message, code=None):
        body = _err(code, status, message)
        if code is None:
            del body["ErrorCode"]
        return status, dict(_JSON), json.dumps(body).encode()

    def max_body(self):
        return 20 * 1024 * 1024

    def handle(self, req):
        probe = req.path == "/v3/REST/sender" and req.method == "GET"
        if probe:
            with self.lock:
                self.probes += 1
        if req.headers.get("Authorization") != self.auth or \
                self.mode == "401":
            return self.error(401, "API key authentication/authorization "
                              "failure. You may be unauthorized to access "
                              "the API or your API key may be expired.",
                              "mj-0001")
        if probe:
            return 200, dict(_JSON), json.dumps(
                {"Count": 1, "Total": 1, "Data": [
                    {"Email": "zoe@example.com", "Status": "Active",
                     "ID": 1}]}).encode()
        if req.path != "/v3.1/send" or req.method != "POST":
            return self.error(404, "Object not found")
        if self.answer is not None:
            st, body = self.answer
            return st, {"Content-Type": "application/json"}, \
                json.dumps(body).encode()
        ctl = self.control()
        if ctl is not None:
            return ctl
        if req.headers.get("Content-Type") != "application/json":
            return self.error(415, "Unsupported Media Type", "mj-0002")
        try:
            body = json.loads(req.body)
        except ValueError:
            body = None
        msgs = body.get("Messages") if isinstance(body, dict) else None
        if not isinstance(msgs, list) or not 1 <= len(msgs) <= 50:
            return self.error(400, "Malformed JSON, please review the "
                              "syntax and properties types.", "mj-0002")
        return self.send(msgs)

    def send(self, msgs):
        """Each message on its own; the answer is 400 when any failed
        (the connector sends one per request)."""
        out, bad = [], False
        for m in msgs:
            rcpts, errors = check(m)
            everyone = set(a for v in rcpts.values() for a in v)
            for a in sorted(everyone & self.reject):
                errors.append(_err("mj-0013", 400, "\"%s\" is an invalid "
                                   "email address." % a, ["To"]))
            if not errors and self.mode == "sender":
                errors.append(_err("send-0008", 403, "\"%s\" is not an "
                                   "authorized sender email address for "
                                   "your account." % m["From"]["Email"],
                                   ["From"]))
            if errors:
                bad = True
                out.append({"Status": "error", "Errors": errors})
            else:
                out.append(self.accept(m, rcpts))
        return (400 if bad else 200), dict(_JSON), json.dumps(
            {"Messages": out}).encode()

    def accept(self, m, rcpts):
        res = {"Status": "success"}
        if "CustomID" in m:
            res["CustomID"] = m["CustomID"]
        ids = []
        for f in ("To", "Cc", "Bcc"):
            listed = []
            for a in rcpts.get(f, []):
                with self.lock:
                    self.next_id += 1
                    mid = self.next_id
                ids.append(mid)
                if a in self.omit:
                    continue
                listed.append({"Email": a, "MessageUUID": str(uuid.uuid4()),
                               "MessageID": mid, "MessageHref":
                               "https://api.mailjet.com/v3/REST/message/%d"
                               % mid})
            res[f] = listed
        with self.lock:
            self.received.append({"body": m, "answer": res})
        return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--mode", default="ok", choices=MODES)
    a = ap.parse_args()
    f = FakeMailjet(a.key, a.secret, mode=a.mode).start(a.port)
    print(f.base_url, flush=True)
    try:
        f.thread.join()
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    main()
