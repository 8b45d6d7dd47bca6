"""The official SDKs against the drop-in endpoints (issue 9).

tests/sdk/ holds an npm project pinning @sendgrid/mail and mailgun.js
(with form-data); `make test` installs it with `npm ci`.  Each script is
pointed at this server by the SDK's documented setting (SendGrid: the
client's baseUrl; Mailgun: the client's url), sends messages with cc, bcc,
custom headers, an attachment and an inline image, and the messages that
arrive in the maildir must carry what was sent.  Skipped, saying why, when
node or the installed SDKs are missing.
"""

import base64
import email
import email.policy
import json
import os
import shutil
import subprocess

import pytest

import shivneri_harness as h

SDK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sdk")
SG_KEY = "SG.shivneri-sdk-test-key"
MG_KEY = "mg-sdk-test-key-0123"
DOMAIN = "mg.example.com"

# Under CI (make test installs all of it) a missing piece is a failure.
pytestmark = pytest.mark.skipif(
    not os.environ.get("CI") and (
    shutil.which("node") is None
    or not os.path.isdir(os.path.join(SDK, "node_modules", "mailgun.js"))),
    reason="node or tests/sdk/node_modules missing (make test runs npm ci)")


@pytest.fixture(scope="module")
def c(module_cluster_factory, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text("%s\n%s\n" % (SG_KEY, MG_KEY))
    os.chmod(keys, 0o600)
    cl = module_cluster_factory(providers=("a",), spawn=True,
                                server_extra={"api_keys_file": str(keys),
                                              "mailgun_domains": DOMAIN})
    cl.start_server()
    h.wait_for(lambda: cl.get("/readyz").status == 200, 10, "provider up")
    return cl


with open(os.path.join(SDK, "fixture.json")) as f:
    FIX = json.load(f)


def node(c, script, key):
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(SHIVNERI_URL="http://127.0.0.1:%d" % c.http_port,
               SHIVNERI_KEY=key, SHIVNERI_DOMAIN=DOMAIN,
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1")
    p = subprocess.run(["node", os.path.join(SDK, script)], env=env,
                       capture_output=True, timeout=h.scaled(30))
    out = p.stdout.decode()
    assert p.returncode == 0, (out, p.stderr.decode()[-2000:])
    return json.loads(out.strip().splitlines()[-1])


def arrived(c, mid):
    auth = {"Authorization": "Bearer " + SG_KEY}
    h.wait_for(lambda: c.get("/v1/messages/" + mid,
                             headers=auth).json["status"] == "delivered",
               15, "message %s delivered" % mid)
    new = os.path.join(c.maildir("a"), "new")
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            raw = f.read()
        if ("<%s@" % mid).encode() in raw.split(b"\r\n\r\n", 1)[0]:
            return raw
    raise AssertionError("no file for %s" % mid)


def check_as_sent(m):
    """The fields both scripts send, as they arrived."""
    assert m["From"].addresses[0].display_name == "The Shop"
    assert [a.addr_spec for a in m["To"].addresses] == ["to1@example.com",
                                                        "to2@example.com"]
    assert m["To"].addresses[0].display_name == "To One"
    assert m["Cc"].addresses[0].addr_spec == "cc@example.com"
    assert m["Cc"].addresses[0].display_name == "Cee, Esq."
    assert m["Bcc"] is None
    assert m["Reply-To"] == "help@example.com"
    assert m["Subject"] == FIX["subject"]
    assert m["X-Order"] == "1234" and m["X-Campaign"] == "spring"
    assert m.get_body(("plain",)).get_content().replace("\r\n", "\n") \
        .rstrip("\n") == FIX["text"]
    assert m.get_body(("html",)).get_content().rstrip() == FIX["html"]
    pdf = [p for p in m.walk() if p.get_filename() == "invoice.pdf"][0]
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_content_disposition() == "attachment"
    assert pdf.get_content() == base64.b64decode(FIX["pdf_b64"])
    png = [p for p in m.walk() if p.get_filename() == "logo.png"][0]
    assert png.get_content_type() == "image/png"
    assert png.get_content_disposition() == "inline"
    assert png.get_content() == base64.b64decode(FIX["png_b64"])
    return png


def test_sendgrid_sdk(c):
    r = node(c, "send_sendgrid.js", SG_KEY)
    assert r["status"] == 202, r
    mid = r["message_id"]
    m = email.message_from_bytes(arrived(c, mid),
                                 policy=email.policy.default)
    png = check_as_sent(m)
    assert png["Content-ID"] == "<logo>"
    assert json.loads(m["X-Shivneri-Custom-Args"]) == {"user": "42"}
    g = c.get("/v1/messages/" + mid,
              headers={"Authorization": "Bearer " + SG_KEY}).json
    assert g["tags"] == ["receipts"], g


def test_mailgun_sdk(c):
    r = node(c, "send_mailgun.js", MG_KEY)
    form, mime = r["form"], r["mime"]
    assert form["status"] == 200 and mime["status"] == 200, r
    assert form["message"] == "Queued. Thank you.", r
    mid = form["id"][1:].split("@")[0]
    assert form["id"] == "<%s@%s>" % (mid, DOMAIN), r
    m = email.message_from_bytes(arrived(c, mid),
                                 policy=email.policy.default)
    png = check_as_sent(m)
    assert png["Content-ID"] == "<logo.png>"
    assert json.loads(m["X-Mailgun-Variables"]) == {"user": "42"}
    raw = arrived(c, mime["id"][1:].split("@")[0])
    assert raw.endswith(FIX["raw_mime"].encode()), raw
