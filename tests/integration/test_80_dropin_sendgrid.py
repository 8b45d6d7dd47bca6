"""The SendGrid drop-in, POST /v3/mail/send (issue 9).

A request as SendGrid's documentation writes it (sent with curl) is
answered 202 with an empty body and X-Message-Id, only once stored; the id
works with GET /v1/messages/ID, and the message arrives in a maildir with
the fields it was sent with.  Every bad-input class is refused in
SendGrid's error shape, naming the field, with nothing stored; features
the relay does not have are refused, never dropped.
"""

import base64
import email
import email.policy
import json
import os
import subprocess

import pytest

import shivneri_harness as h

KEY = "sg-key-0123456789abcdef"
LIMIT = 65536


@pytest.fixture(scope="module")
def c(module_cluster_factory, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(KEY + "\n")
    os.chmod(keys, 0o600)
    cl = module_cluster_factory(providers=("a",), spawn=True,
                                server_extra={"api_keys_file": str(keys),
                                              "max_message_bytes": LIMIT})
    cl.start_server()
    h.wait_for(lambda: cl.get("/readyz").status == 200, 10, "provider up")
    return cl


def auth(key=KEY):
    return {"Authorization": "Bearer " + key}


def sg(c, body, key=KEY, headers=None):
    hdrs = auth(key) if key is not None else {}
    hdrs.update(headers or {})
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return h.http(c.http_port, "POST", "/v3/mail/send", body, headers=hdrs)


def stored(c):
    s = c.get("/v1/stats", headers=auth()).json
    return s["queued"] + s["sending"] + s["delivered"] + s["failed"]


def arrived(c, mid):
    """The delivered message of id mid, parsed."""
    h.wait_for(lambda: c.get("/v1/messages/" + mid,
                             headers=auth()).json["status"] == "delivered",
               15, "message %s delivered" % mid)
    new = os.path.join(c.maildir("a"), "new")
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            raw = f.read()
        if ("<%s@" % mid).encode() in raw.split(b"\r\n\r\n", 1)[0]:
            return email.message_from_bytes(raw, policy=email.policy.default)
    raise AssertionError("no file for %s" % mid)


def accepted(r):
    assert r.status == 202, r
    assert r.body == b"", r
    mid = r.headers.get("X-Message-Id")
    assert mid, r.headers
    return mid


def test_curl_from_sendgrid_docs(c):
    """The "Hello, World!" curl request of SendGrid's getting-started
    page, with only the URL and the key changed."""
    data = ('{"personalizations": [{"to": [{"email": "recipient@example.com"'
            '}]}],"from": {"email": "sender@example.com"},"subject": '
            '"Hello, World!","content": [{"type": "text/plain", "value": '
            '"Heya!"}]}')
    out = subprocess.run(
        ["curl", "-sS", "-i", "--max-time", "20", "--request", "POST",
         "--url", "http://127.0.0.1:%d/v3/mail/send" % c.http_port,
         "--header", "Authorization: Bearer " + KEY,
         "--header", "Content-Type: application/json", "--data", data],
        capture_output=True, check=True, timeout=30).stdout.decode()
    head = out.split("\r\n\r\n", 1)[0].split("\r\n")
    assert head[0] == "HTTP/1.1 202 Accepted", out
    mid = [l.split(":", 1)[1].strip() for l in head
           if l.lower().startswith("x-message-id:")][0]
    r = c.get("/v1/messages/" + mid, headers=auth())
    assert r.status == 200 and r.json["id"] == mid, r
    m = arrived(c, mid)
    assert m["From"] == "sender@example.com"
    assert m["To"] == "recipient@example.com"
    assert m["Subject"] == "Hello, World!"
    assert m.get_content().strip() == "Heya!"


def test_every_supported_field_arrives(c):
    pdf = os.urandom(700)
    png = os.urandom(300)
    body = {
        "personalizations": [{
            "to": [{"email": "to@example.com", "name": "Doe, John"}],
            "cc": [{"email": "cc@example.com", "name": "Cee"}],
            "bcc": [{"email": "bcc@example.com"}],
            "subject": "per-personalization subject",
            "headers": {"X-Tier": "gold"},
            "custom_args": {"order": "42"},
        }],
        "from": {"email": "from@example.com", "name": "Shop \"Best\""},
        "reply_to_list": [{"email": "r1@example.com"},
                          {"email": "r2@example.com", "name": "Two"}],
        "subject": "top subject, overridden",
        "content": [{"type": "text/plain", "value": "plain body"},
                    {"type": "text/html",
                     "value": "<p>html <img src=\"cid:logo1\"></p>"}],
        "attachments": [
            {"content": base64.b64encode(pdf).decode(),
             "type": "application/pdf", "filename": "a.pdf",
             "disposition": "attachment"},
            {"content": base64.b64encode(png).decode(), "type": "image/png",
             "filename": "logo.png", "disposition": "inline",
             "content_id": "logo1"}],
        "headers": {"X-Tier": "silver", "X-Campaign": "c1"},
        "categories": ["welcome", "q4"],
        "custom_args": {"user": "7"},
        "mail_settings": {"sandbox_mode": {"enable": False}},
    }
    mid = accepted(sg(c, body))
    g = c.get("/v1/messages/" + mid, headers=auth()).json
    assert g["tags"] == ["welcome", "q4"], g
    m = arrived(c, mid)
    assert m["To"] == '"Doe, John" <to@example.com>'
    assert m["Cc"] == "Cee <cc@example.com>"
    assert m["Bcc"] is None
    assert m["From"] == '"Shop \\"Best\\"" <from@example.com>' or \
        m["From"].addresses[0].display_name == 'Shop "Best"', m["From"]
    assert [a.addr_spec for a in m["Reply-To"].addresses] == \
        ["r1@example.com", "r2@example.com"]
    assert m["Subject"] == "per-personalization subject"
    assert m["X-Tier"] == "gold" and m["X-Campaign"] == "c1"
    assert json.loads(m["X-Shivneri-Custom-Args"]) == {"user": "7",
                                                       "order": "42"}
    parts = {p.get_filename(): p for p in m.iter_attachments()}
    assert parts["a.pdf"].get_content() == pdf
    assert parts["a.pdf"].get_content_type() == "application/pdf"
    inline = [p for p in m.walk() if p.get_filename() == "logo.png"][0]
    assert inline["Content-ID"] == "<logo1>"
    assert inline.get_content_disposition() == "inline"
    assert inline.get_content() == png
    assert m.get_body(("plain",)).get_content().strip() == "plain body"


def test_attachment_type_with_parameters(c):
    """SendGrid takes a media type with parameters; it arrives as given,
    the relay's name= after it.  CR, LF and what readers differ on (a
    parameter twice) are still refused, nothing stored."""
    body = ok_body(personalizations=[{"to": [{"email": "t@example.com"}]}],
                   attachments=[{
        "content": base64.b64encode(b"a,b\r\n").decode(),
        "type": "text/csv; charset=utf-8; header=present",
        "filename": "t.csv"}])
    mid = accepted(sg(c, body))
    m = arrived(c, mid)
    part = [p for p in m.iter_attachments() if p.get_filename() == "t.csv"][0]
    assert part.get_content_type() == "text/csv"
    assert part.get_param("charset") == "utf-8"
    assert part.get_param("header") == "present"
    new = os.path.join(c.maildir("a"), "new")
    raws = []
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            raws.append(f.read())
    assert any(b"Content-Type: text/csv; charset=utf-8; header=present; "
               b"name=t.csv\r\n" in raw for raw in raws)
    before = stored(c)
    for t in ("text/plain; charset=utf-8\r\nBcc: x@example.com",
              "text/plain; charset=a; Charset=b"):
        body["attachments"][0]["type"] = t
        r = sg(c, body)
        assert r.status == 400, (t, r)
        assert r.json["errors"][0]["field"] == \
            "attachments.0.content_type", r.json
    assert stored(c) == before


def test_each_personalization_is_a_message(c):
    before = stored(c)
    body = {"personalizations": [
        {"to": [{"email": "p0@example.com"}]},
        {"to": [{"email": "p1@example.com"}], "subject": "second"}],
        "from": {"email": "f@example.com"}, "subject": "first",
        "content": [{"type": "text/plain", "value": "x"}]}
    mid = accepted(sg(c, body))
    h.wait_for(lambda: stored(c) == before + 2, 5, "two messages stored")
    assert arrived(c, mid)["To"] == "p0@example.com"


def test_idempotency_key(c):
    body = {"personalizations": [{"to": [{"email": "i@example.com"}]},
                                 {"to": [{"email": "j@example.com"}]}],
            "from": {"email": "f@example.com"}, "subject": "idem",
            "content": [{"type": "text/plain", "value": "x"}]}
    before = stored(c)
    first = accepted(sg(c, body, headers={"Idempotency-Key": "k-80"}))
    again = accepted(sg(c, body, headers={"Idempotency-Key": "k-80"}))
    assert first == again
    assert stored(c) == before + 2
    body["subject"] = "other"
    r = sg(c, body, headers={"Idempotency-Key": "k-80"})
    assert r.status == 422, r
    assert stored(c) == before + 2



def test_idempotency_key_binds_the_whole_request(c):
    """A key is one request: reused for a request with more, fewer or
    other personalizations it is 422 and stores nothing.  With a digest
    per personalization, [A, B] after [A] stored B under KEY#1 and
    answered 202, and [A] after [A, B] answered 202 for a request never
    taken."""
    def body(*tos):
        return {"personalizations": [{"to": [{"email": t}]} for t in tos],
                "from": {"email": "f@example.com"}, "subject": "whole",
                "content": [{"type": "text/plain", "value": "x"}]}

    before = stored(c)
    accepted(sg(c, body("w1@example.com"), headers={"Idempotency-Key": "k-w1"}))
    r = sg(c, body("w1@example.com", "w2@example.com"),
           headers={"Idempotency-Key": "k-w1"})
    assert r.status == 422, r
    assert r.json["errors"][0]["message"].startswith("Idempotency-Key"), r
    assert stored(c) == before + 1

    first = accepted(sg(c, body("w3@example.com", "w4@example.com"),
                        headers={"Idempotency-Key": "k-w2"}))
    assert stored(c) == before + 3
    r = sg(c, body("w3@example.com"), headers={"Idempotency-Key": "k-w2"})
    assert r.status == 422, r
    # The same request again is still the first one's duplicate.
    again = accepted(sg(c, body("w3@example.com", "w4@example.com"),
                        headers={"Idempotency-Key": "k-w2"}))
    assert again == first
    assert stored(c) == before + 3

def ok_body(**kw):
    b = {"personalizations": [{"to": [{"email": "bad@example.com"}]}],
         "from": {"email": "f@example.com"}, "subject": "s",
         "content": [{"type": "text/plain", "value": "x"}]}
    b.update(kw)
    return b


def pers(**kw):
    p = {"to": [{"email": "bad@example.com"}]}
    p.update(kw)
    return [p]


BAD = [
    ("malformed", b'{"personalizations": [', 400, ""),
    ("not an object", b"[1]", 400, ""),
    ("personalizations type", ok_body(personalizations={}), 400,
     "personalizations"),
    ("email type", ok_body(personalizations=[{"to": [{"email": 5}]}]), 400,
     "personalizations.0.to.0.email"),
    ("bad address", ok_body(personalizations=[{"to": [{"email": "x@"}]}]),
     400, "personalizations.0.to.0"),
    ("crlf subject", ok_body(subject="a\r\nBcc: x@example.com"), 400,
     "subject"),
    ("crlf name", ok_body(personalizations=[{"to": [
        {"email": "a@example.com", "name": "A\r\nBcc: x@example.com"}]}]),
     400, "personalizations.0.to.0"),
    ("crlf header", ok_body(headers={"X-A": "1\r\nBcc: x@example.com"}),
     400, "headers.X-A"),
    ("relay header", ok_body(headers={"Bcc": "x@example.com"}), 400,
     "headers.Bcc"),
    # One field spelled in two cases: readers differ on which they read.
    ("header in two cases", ok_body(headers={
        "In-Reply-To": "<a@example.com>", "in-reply-to": "<b@example.com>"}),
     400, "headers.in-reply-to"),
    # A personalization's header is named where the client wrote it.
    ("crlf personalization header", ok_body(personalizations=pers(
        headers={"X-A": "1\r\nBcc: x@example.com"})), 400,
     "personalizations.0.headers.X-A"),
    ("relay personalization header", ok_body(
        headers={"X-B": "ok"},
        personalizations=pers(headers={"bcc": "x@example.com"})), 400,
     "personalizations.0.headers.bcc"),
    ("unknown field", ok_body(colour="red"), 400, "colour"),
    ("unknown in personalization", ok_body(personalizations=pers(x=1)),
     400, "personalizations.0.x"),
    ("template_id", ok_body(template_id="d-1"), 400, "template_id"),
    ("asm", ok_body(asm={"group_id": 1}), 400, "asm"),
    ("sandbox", ok_body(mail_settings={"sandbox_mode": {"enable": True}}),
     400, "mail_settings.sandbox_mode"),
    ("tracking", ok_body(tracking_settings={
        "click_tracking": {"enable": True}}), 400,
     "tracking_settings.click_tracking"),
    ("ip_pool_name", ok_body(ip_pool_name="p"), 400, "ip_pool_name"),
    ("batch_id", ok_body(batch_id="b"), 400, "batch_id"),
    ("send_at", ok_body(send_at=1700000000), 400, "send_at"),
    ("send_at in personalization",
     ok_body(personalizations=pers(send_at=1700000000)), 400,
     "personalizations.0.send_at"),
    ("dynamic_template_data",
     ok_body(personalizations=pers(dynamic_template_data={})), 400,
     "personalizations.0.dynamic_template_data"),
    ("bad base64", ok_body(attachments=[{"content": "!!!!",
                                         "filename": "a.txt"}]), 400,
     "attachments.0.content_base64"),
    ("inline without cid", ok_body(attachments=[
        {"content": "QQ==", "filename": "a", "disposition": "inline"}]),
     400, "attachments.0.content_id"),
    ("other content type", ok_body(content=[{"type": "text/calendar",
                                             "value": "x"}]), 400,
     "content.0.type"),
    ("no subject", ok_body(subject=None), 400, "subject"),
    ("no content", ok_body(content=None), 400, "content"),
    ("no from", ok_body(**{"from": None}), 400, "from"),
    ("both reply_to", ok_body(reply_to={"email": "a@example.com"},
                              reply_to_list=[{"email": "b@example.com"}]),
     400, "reply_to_list"),
    ("too many recipients", ok_body(personalizations=[{"to": [
        {"email": "r%d@example.com" % i} for i in range(1001)]}]), 400,
     "personalizations"),
    ("second personalization bad", ok_body(personalizations=[
        {"to": [{"email": "good@example.com"}]},
        {"to": [{"email": "not an address"}]}]), 400,
     "personalizations.1.to.0"),
    ("nul", b'{"personalizations":[{"to":[{"email":"a@example.com"}]}],'
     b'"from":{"email":"f@example.com"},"subject":"a\\u0000b",'
     b'"content":[{"type":"text/plain","value":"x"}]}', 400, ""),
    ("built message too large", ok_body(attachments=[
        {"content": base64.b64encode(b"x" * LIMIT).decode(),
         "filename": "big.bin"}]), 413, ""),
]


@pytest.mark.parametrize("name,body,status,field", BAD,
                         ids=[b[0] for b in BAD])
def test_bad_input_stores_nothing(c, name, body, status, field):
    before = stored(c)
    r = sg(c, body)
    assert r.status == status, (name, r)
    errs = r.json["errors"]
    assert len(errs) == 1 and errs[0]["message"], r
    assert set(errs[0]) == {"message", "field", "help"}, r
    assert (errs[0]["field"] or "") == field, (name, r)
    assert stored(c) == before


def test_auth_type_and_method(c):
    body = ok_body()
    for key in (None, "wrong", KEY[:-1]):
        r = sg(c, body, key=key)
        assert r.status == 401, r
        assert "authorization grant" in r.json["errors"][0]["message"]
    r = h.http(c.http_port, "POST", "/v3/mail/send", json.dumps(body),
               headers={"Authorization": "Basic YXBpOnNnLWtleQ=="})
    assert r.status == 401, r
    r = sg(c, json.dumps(body), headers={"Content-Type": "text/plain"})
    assert r.status == 415 and r.json["errors"], r
    r = h.http(c.http_port, "GET", "/v3/mail/send", headers=auth())
    assert r.status == 405 and r.json["errors"], r


def test_oversize_refused_on_the_head(c):
    """A declared length over the cap is 413 in SendGrid's shape before a
    byte of body is read."""
    head = ("POST /v3/mail/send HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (KEY, 1 << 30)).encode()
    status, body = h.raw_http(c.http_port, head)
    assert status == 413, body
    assert json.loads(body)["errors"][0]["message"], body
