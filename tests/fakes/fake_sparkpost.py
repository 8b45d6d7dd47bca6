"""A stand-in for SparkPost's transmissions and account calls.

It checks what SparkPost checks (PROVIDERS.md section 5): the raw key as
Authorization, no scheme word (401 otherwise), a JSON body with a
non-empty `recipients` list of {address: {email}} (or address strings) and
a `content` that is inline or `email_rfc822` alone (422 otherwise), the
content at most 20 MB (413).  It answers 200 {"results":
{"total_rejected_recipients": R, "total_accepted_recipients": A, "id":
"..."}}, with the recipients in `reject` listed in `rcpt_to_errors`.
Errors have SparkPost's shape {"errors": [{"message", "code",
"description"}]}.  GET /api/v1/account, the probe, answers {"results":
{...}} with the key (401 without it); `probes` counts them, answered or
not.  Modes (fakelib): 503, 429, 401, slow, hang, reject; and "420", a
sending limit of the account.  Run by hand:
fake_sparkpost.py --port 8027 --key KEY [--mode 503].
"""

import argparse
import json
import os
import re
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakelib  # noqa: E402

_ADDR = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+$")
INLINE = {"from", "subject", "text", "html", "reply_to", "headers",
          "attachments", "amp_html", "inline_images"}


class FakeSparkPost(fakelib.FakeServer):
    def __init__(self, key, **kw):
        super().__init__(**kw)
        self.key = key
        self.probes = 0  # GET /api/v1/account requests seen

    def error(self, status, message, code="1000"):
        return status, {"Content-Type": "application/json"}, json.dumps(
            {"errors": [{"message": message, "code": code,
                         "description": message}]}).encode()

    def max_body(self):
        return 21 * 1024 * 1024

    def handle(self, req):
        probe = req.path == "/api/v1/account" and req.method == "GET"
        with self.lock:
            self.probes += probe
        if req.headers.get("Authorization") != self.key or \
                self.mode == "401":
            return self.error(401, "Unauthorized.", "1100")
        if probe:
            return 200, {"Content-Type": "application/json"}, json.dumps(
                {"results": {"customer_id": 1, "status": "active",
                             "subscription": {"name": "fake"}}}).encode()
        if req.path != "/api/v1/transmissions" or req.method != "POST":
            return self.error(404, "resource not found", "1600")
        if self.mode == "420":
            return self.error(420, "Exceed Sending Limit (hourly)", "2101")
        ctl = self.control()
        if ctl is not None:
            return ctl
        try:
            body = json.loads(req.body)
            rcpts = [r["address"] if isinstance(r["address"], str)
                     else r["address"]["email"]
                     for r in body["recipients"]]
            content = body["content"]
        except (ValueError, KeyError, TypeError):
            return self.error(422, "invalid data format/type", "1300")
        if not rcpts or not all(isinstance(a, str) and _ADDR.match(a)
                                for a in rcpts):
            return self.error(422, "At least one valid recipient is "
                              "required", "1400")
        if "email_rfc822" in content:
            if set(content) != {"email_rfc822"}:
                return self.error(422, "email_rfc822 must be alone in "
                                  "content", "1300")
            if len(content["email_rfc822"].encode()) > 20 * 1024 * 1024:
                return self.error(413, "content too large", "1300")
        elif not set(content) <= INLINE or "from" not in content:
            return self.error(422, "invalid content", "1300")
        bad = [a for a in rcpts if a in self.reject]
        mid = str(uuid.uuid4().int)[:18]
        res = {"total_rejected_recipients": len(bad),
               "total_accepted_recipients": len(rcpts) - len(bad),
               "id": mid}
        if bad:
            res["rcpt_to_errors"] = [
                {"message": "invalid recipient", "code": "1902",
                 "description": a} for a in bad]
        if len(bad) < len(rcpts):
            with self.lock:
                self.received.append({"body": body, "id": mid})
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"results": res}).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", required=True)
    ap.add_argument("--mode", default="ok", choices=fakelib.MODES + ("420",))
    a = ap.parse_args()
    f = FakeSparkPost(a.key, mode=a.mode).start(a.port)
    print(f.base_url, flush=True)
    try:
        f.thread.join()
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    main()
