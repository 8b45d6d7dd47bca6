"""A stand-in for Mailgun's raw-MIME send, POST /v3/{domain}/messages.mime.

It checks what Mailgun checks (PROVIDERS.md section 1): Basic auth with
user "api" and the key (401 plain-text "Forbidden" otherwise), the domain
(404 "Domain not found"), a multipart/form-data body with at least one
`to` that is an address and a `message` file part (400 with a JSON
"message" otherwise), and answers 200 {"id": "<...@domain>", "message":
"Queued. Thank you."}; an unknown path answers 200 "Mailgun Magnificent
API" without an id, as Mailgun does.  Modes (fakelib): 503, 429, 401,
slow, hang, reject (400 "to parameter is not a valid address" when a
recipient is in `reject`).  Run by hand: fake_mailgun.py --port 8025
--key KEY --domain mg.example.com [--mode 503].
"""

import argparse
import base64
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fakelib  # noqa: E402

_ADDR = re.compile(r"^[^@\s<>,]+@[^@\s<>,]+$")


class FakeMailgun(fakelib.FakeServer):
    def __init__(self, key, domain, **kw):
        super().__init__(**kw)
        self.key = key
        self.domain = domain
        self.seq = 0

    def handle(self, req):
        m = re.match(r"^/v3/([^/]+)/messages\.mime$", req.path)
        if m is None or req.method != "POST":
            return 200, {"Content-Type": "application/json"}, \
                b'{"message":"Mailgun Magnificent API"}'
        if not self._auth_ok(req.headers.get("Authorization", "")) or \
                self.mode == "401":
            return 401, {"Content-Type": "text/plain"}, b"Forbidden"
        if m.group(1) != self.domain:
            return self.error(404, "Domain not found: %s" % m.group(1))
        ctl = self.control()
        if ctl is not None:
            return ctl
        try:
            fields = fakelib.parse_multipart(
                req.headers.get("Content-Type", ""), req.body)
        except ValueError as e:
            return self.error(400, "bad form: %s" % e)
        to = [v.decode() for n, f, v in fields if n == "to"]
        msgs = [(f, v) for n, f, v in fields if n == "message"]
        if not to:
            return self.error(400, "to parameter is missing")
        if len(msgs) != 1 or msgs[0][0] is None:
            return self.error(400, "message parameter is missing")
        for addr in to:
            if not _ADDR.match(addr) or addr in self.reject or \
                    (self.mode == "reject" and not self.reject):
                return self.error(
                    400, "to parameter is not a valid address. "
                    "please check documentation")
        with self.lock:
            self.seq += 1
            mid = "<%s.%d@%s>" % (time.strftime("%Y%m%d%H%M%S"), self.seq,
                                  self.domain)
            self.received.append({"to": to, "message": msgs[0][1],
                                  "id": mid})
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"id": mid, "message": "Queued. Thank you."}).encode()

    def _auth_ok(self, value):
        if not value.startswith("Basic "):
            return False
        try:
            raw = base64.b64decode(value[6:], validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        return raw == "api:" + self.key


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--key", required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--mode", default="ok", choices=fakelib.MODES)
    a = ap.parse_args()
    f = FakeMailgun(a.key, a.domain, mode=a.mode).start(a.port)
    print(f.base_url, flush=True)
    try:
        f.thread.join()
    except KeyboardInterrupt:
        f.stop()


if __name__ == "__main__":
    main()
