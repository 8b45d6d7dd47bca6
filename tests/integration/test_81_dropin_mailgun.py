"""The Mailgun drop-in, POST /v3/DOMAIN/messages and messages.mime
(issue 9).

Requests as Mailgun's documentation writes them (curl -F, --user api:KEY)
are answered 200 {"id":"<ID@DOMAIN>","message":"Queued. Thank you."} only
once stored; the id works with GET /v1/messages/ with or without its
brackets; the message arrives in a maildir with the fields it was sent
with (messages.mime: byte for byte after the added headers).  Every
bad-input class, multipart ones included, is refused in Mailgun's shape
with nothing stored; DOMAIN is checked against mailgun_domains.
"""

import base64
import email
import email.policy
import json
import os
import subprocess
import urllib.parse

import pytest

import shivneri_harness as h

KEY = "mg-key-0123456789abcdef"
DOMAIN = "mg.example.com"
LIMIT = 65536


@pytest.fixture(scope="module")
def c(module_cluster_factory, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "api-keys"
    keys.write_text(KEY + "\n")
    os.chmod(keys, 0o600)
    cl = module_cluster_factory(
        providers=("a",), spawn=True,
        server_extra={"api_keys_file": str(keys),
                      "max_message_bytes": LIMIT,
                      "mailgun_domains": DOMAIN + ", other.example.org"})
    cl.start_server()
    h.wait_for(lambda: cl.get("/readyz").status == 200, 10, "provider up")
    return cl


def basic(key=KEY, user="api"):
    tok = base64.b64encode(("%s:%s" % (user, key)).encode()).decode()
    return {"Authorization": "Basic " + tok}


def auth():
    return {"Authorization": "Bearer " + KEY}


def stored(c):
    s = c.get("/v1/stats", headers=auth()).json
    return s["queued"] + s["sending"] + s["delivered"] + s["failed"]


def curl(c, *args, path="/v3/%s/messages" % DOMAIN, user="api:" + KEY):
    """curl as Mailgun's docs call it; returns (status, body)."""
    out = subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-o", "-", "-w",
         "\n%{http_code}", "--user", user,
         "http://127.0.0.1:%d%s" % (c.http_port, path)] + list(args),
        capture_output=True, check=True, timeout=30).stdout.decode()
    body, _, code = out.rpartition("\n")
    return int(code), body


def mg_id(status, body):
    assert status == 200, body
    j = json.loads(body)
    assert j["message"] == "Queued. Thank you.", j
    assert j["id"].startswith("<") and j["id"].endswith("@%s>" % DOMAIN), j
    return j["id"]


def arrived(c, mgid):
    mid = mgid[1:].split("@")[0]
    h.wait_for(lambda: c.get("/v1/messages/" + mid,
                             headers=auth()).json["status"] == "delivered",
               15, "message %s delivered" % mid)
    new = os.path.join(c.maildir("a"), "new")
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            raw = f.read()
        if ("<%s@" % mid).encode() in raw.split(b"\r\n\r\n", 1)[0]:
            return raw
    raise AssertionError("no file for %s" % mid)


def parsed(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_curl_from_mailgun_docs(c, tmp_path):
    """The documented sends: -F fields, repeated to, then attachment and
    inline files, tags, a header and a variable."""
    st, body = curl(c, "-F", "from=Excited User <mailgun@%s>" % DOMAIN,
                    "-F", "to=YOU@example.com", "-F", "to=bar@example.com",
                    "-F", "subject=Hello", "-F",
                    "text=Testing some Mailgun awesomeness!")
    mgid = mg_id(st, body)
    m = parsed(arrived(c, mgid))
    assert m["From"] == "Excited User <mailgun@%s>" % DOMAIN
    assert m["To"] == "YOU@example.com, bar@example.com"
    assert m.get_content().strip() == "Testing some Mailgun awesomeness!"
    # GET takes the id as Mailgun gave it, %-encoded, or bare.
    for form in (mgid, urllib.parse.quote(mgid, safe="@"), mgid[1:-1]):
        r = c.get("/v1/messages/" + form, headers=auth())
        assert r.status == 200 and r.json["id"] == mgid[1:].split("@")[0], r

    jpg = os.urandom(900)
    (tmp_path / "cartman.jpg").write_bytes(jpg)
    (tmp_path / "notes.txt").write_bytes(b"attached\r\n")
    st, body = curl(
        c, "-F", "from=Excited User <mailgun@%s>" % DOMAIN,
        "-F", "to=a@example.com, \"Doe, B\" <b@example.com>",
        "-F", "cc=c@example.com", "-F", "bcc=d@example.com",
        "-F", "subject=Hello", "-F", "text=Testing",
        "--form-string",
        "html=<html>Inline image: <img src=\"cid:cartman.jpg\"></html>",
        "-F", "attachment=@%s" % (tmp_path / "notes.txt"),
        "-F", "inline=@%s;type=image/jpeg" % (tmp_path / "cartman.jpg"),
        "-F", "o:tag=September newsletter", "-F", "o:tag=newsletters",
        "-F", "h:X-My-Header=my value", "-F", "h:Reply-To=r@example.com",
        "-F", 'v:my-custom-data={"my_message_id": 123}')
    mgid = mg_id(st, body)
    r = c.get("/v1/messages/" + mgid[1:-1], headers=auth()).json
    assert r["tags"] == ["September newsletter", "newsletters"], r
    m = parsed(arrived(c, mgid))
    assert [a.addr_spec for a in m["To"].addresses] == ["a@example.com",
                                                        "b@example.com"]
    assert m["To"].addresses[1].display_name == "Doe, B"
    assert m["Cc"] == "c@example.com" and m["Bcc"] is None
    assert m["Reply-To"] == "r@example.com"
    assert m["X-My-Header"] == "my value"
    assert json.loads(m["X-Mailgun-Variables"]) == {
        "my-custom-data": '{"my_message_id": 123}'}
    inline = [p for p in m.walk() if p.get_filename() == "cartman.jpg"][0]
    assert inline["Content-ID"] == "<cartman.jpg>"
    assert inline.get_content_type() == "image/jpeg"
    assert inline.get_content() == jpg
    att = [p for p in m.walk() if p.get_filename() == "notes.txt"][0]
    assert att.get_content_disposition() == "attachment"
    assert att.get_payload(decode=True) == b"attached\r\n"


def file_part(name, filename, ctype, data, boundary="XyZ"):
    return (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; "
            b"filename=\"%s\"\r\nContent-Type: %s\r\n\r\n%s\r\n"
            % (boundary.encode(), name.encode(), filename.encode(),
               ctype.encode(), data))


def test_file_part_type_keeps_its_parameters(c):
    """A file's charset is part of its type: until 2026-11-30 the drop-in
    kept the bare type, and a Latin-1 text file was read as UTF-8.
    Parameters /v1 refuses (RFC 2231, one given twice) come from the
    client's form library: the file keeps its bare type, not refused."""
    latin = "café".encode("latin-1")
    body = with_()[:-len(b"--XyZ--\r\n")]
    body += file_part("attachment", "l.txt",
                      "text/plain; charset=iso-8859-1  ", latin)
    body += file_part("attachment", "odd.txt",
                      "text/plain; charset*=utf-8''x; a=1; A=2", b"odd")
    body += b"--XyZ--\r\n"
    hd = basic()
    hd["Content-Type"] = MP
    r = h.http(c.http_port, "POST", "/v3/%s/messages" % DOMAIN, body,
               headers=hd)
    m = parsed(arrived(c, mg_id(r.status, r.body.decode())))
    parts = {p.get_filename(): p for p in m.iter_attachments()}
    assert parts["l.txt"].get_content_type() == "text/plain"
    assert parts["l.txt"].get_param("charset") == "iso-8859-1"
    assert parts["l.txt"].get_content() == "café"
    assert parts["odd.txt"].get_content_type() == "text/plain"
    assert parts["odd.txt"].get_param("a") is None
    assert parts["odd.txt"].get_payload(decode=True) == b"odd"


def test_urlencoded(c):
    st, body = curl(c, "--data-urlencode", "from=u@example.com",
                    "--data-urlencode", "to=v@example.com",
                    "--data-urlencode", "subject=Über & more",
                    "--data-urlencode", "text=a+b=c&d")
    m = parsed(arrived(c, mg_id(st, body)))
    assert m["Subject"] == "Über & more"
    assert m.get_content().strip() == "a+b=c&d"


def test_messages_mime_sent_as_is(c, tmp_path):
    raw = (b"From: Sender <s@example.com>\r\nTo: shown@example.com\r\n"
           b"Subject: raw\r\nX-Kept: yes\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain\r\n\r\nexact bytes\r\n")
    (tmp_path / "message.mime").write_bytes(raw)
    st, body = curl(c, "-F", "to=env@example.com", "-F",
                    "message=@%s" % (tmp_path / "message.mime"),
                    path="/v3/%s/messages.mime" % DOMAIN)
    got = arrived(c, mg_id(st, body))
    assert got.endswith(raw), got
    # A message that is not a file part is taken too.
    r = h.http(c.http_port, "POST", "/v3/%s/messages.mime" % DOMAIN,
               multipart([("to", b"env@example.com"), ("message", raw)]),
               headers=dict(basic(), **{"Content-Type": MP}))
    assert arrived(c, mg_id(r.status, r.body.decode())).endswith(raw)


def test_idempotency_key(c):
    args = ("-H", "Idempotency-Key: mg-k1", "-F", "from=i@example.com",
            "-F", "to=j@example.com", "-F", "text=once")
    before = stored(c)
    first = mg_id(*curl(c, *args))
    again = mg_id(*curl(c, *args))
    assert first == again
    assert stored(c) == before + 1


def multipart(fields, boundary="XyZ"):
    out = b""
    for name, value in fields:
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n"
                % (boundary.encode(), name.encode()))
        out += value + b"\r\n"
    return out + b"--%s--\r\n" % boundary.encode()


GOOD = [("from", b"f@example.com"), ("to", b"t@example.com"),
        ("text", b"body")]
MP = "multipart/form-data; boundary=XyZ"


def with_(*extra, drop=()):
    return multipart([f for f in GOOD if f[0] not in drop] + list(extra))


BAD = [
    ("no end boundary", MP, with_()[:-9], 400, "boundary"),
    ("no boundary at all", MP, b"from=x", 400, "boundary"),
    ("no boundary param", "multipart/form-data", with_(), 400, "boundary"),
    ("huge part headers", MP, b"--XyZ\r\nContent-Disposition: form-data; "
     b"name=\"from\"\r\nX-Pad: " + b"a" * 9000 + b"\r\n\r\nf@example.com\r\n"
     b"--XyZ--\r\n", 400, "8 KiB"),
    ("thousands of parts", MP, multipart(GOOD + [("v:x%d" % i, b"1")
                                                 for i in range(1200)]),
     400, "1000"),
    ("part without name", MP, b"--XyZ\r\nContent-Type: text/plain\r\n\r\n"
     b"x\r\n--XyZ--\r\n", 400, "Content-Disposition"),
    ("bad percent escape", "application/x-www-form-urlencoded",
     b"from=f%4@example.com&to=t@example.com&text=x", 400, "escape"),
    ("missing from", MP, with_(drop=("from",)), 400, "from"),
    ("from twice", MP, with_(("from", b"g@example.com")), 400, "from"),
    ("bad address", MP, with_(("cc", b"not an address")), 400, "cc"),
    ("crlf in subject", MP, with_(("subject", b"a\r\nBcc: x@example.com")),
     400, "subject"),
    ("crlf in header", MP, with_(("h:X-A", b"1\r\nBcc: x@example.com")),
     400, "h:X-A"),
    ("relay header", MP, with_(("h:Bcc", b"x@example.com")), 400, "h:Bcc"),
    # Header names know no case: both would be written.
    ("header twice in two cases", MP, with_(("h:X-Foo", b"1"),
                                            ("h:x-foo", b"2")),
     400, "h:x-foo: given twice"),
    ("header twice", MP, with_(("h:X-Foo", b"1"), ("h:X-Foo", b"2")),
     400, "h:X-Foo: given twice"),
    ("too many headers", MP, with_(*[("h:X-%d" % i, b"1")
                                     for i in range(65)]),
     400, "too many headers"),
    ("nul in text", MP, with_(("subject", b"a\x00b")), 400, "subject"),
    ("invalid utf-8", MP, with_(("subject", b"a\xffb")), 400, "subject"),
    ("unknown field", MP, with_(("colour", b"red")), 400, "colour"),
    ("testmode", MP, with_(("o:testmode", b"yes")), 400, "o:testmode"),
    ("deliverytime", MP, with_(("o:deliverytime", b"x")), 400,
     "o:deliverytime"),
    ("template", MP, with_(("template", b"t")), 400, "template"),
    ("attachment not a file", MP, with_(("attachment", b"x")), 400,
     "attachment"),
    ("text as a file", MP, with_()[:-9] + b"--XyZ\r\nContent-Disposition: "
     b"form-data; name=\"subject\"; filename=\"s.txt\"\r\n\r\nx\r\n"
     b"--XyZ--\r\n", 400, "subject"),
    ("too many tags", MP, with_(*[("o:tag", b"t%d" % i) for i in range(11)]),
     400, "o:tag"),
    ("too many recipients", MP, with_(("bcc", b",".join(
        b"r%d@example.com" % i for i in range(1001)))), 400, "bcc"),
    ("built message too large", MP, with_(("html", b"x" * LIMIT)), 413,
     "larger"),
    ("wrong content type", "application/json", b"{}", 415, "Content-Type"),
]


@pytest.mark.parametrize("name,ctype,body,status,needle", BAD,
                         ids=[b[0] for b in BAD])
def test_bad_input_stores_nothing(c, name, ctype, body, status, needle):
    before = stored(c)
    hd = basic()
    hd["Content-Type"] = ctype
    r = h.http(c.http_port, "POST", "/v3/%s/messages" % DOMAIN, body,
               headers=hd)
    assert r.status == status, (name, r)
    assert set(r.json) == {"message"}, r
    assert needle in r.json["message"], (name, r)
    assert stored(c) == before


def test_mime_refusals(c):
    raw = b"From: s@example.com\r\nSubject: x\r\n\r\nbody\r\n"
    for fields, needle in (
            ([("message", raw)], "to"),
            ([("to", b"e@example.com")], "message"),
            ([("to", b"e@example.com"), ("message", b"Subject: x\r\n\r\nb")],
             "From"),
            ([("to", b"e@example.com"), ("message", raw),
              ("o:tag", b"t")], "o:tag")):
        before = stored(c)
        r = h.http(c.http_port, "POST", "/v3/%s/messages.mime" % DOMAIN,
                   multipart(fields), headers=dict(basic(), **{
                       "Content-Type": MP}))
        assert r.status == 400 and needle in r.json["message"], r
        assert stored(c) == before


def test_auth_domain_route(c):
    body = with_()
    for hd in ({}, basic("wrong"), basic(KEY, user="apx"),
               {"Authorization": "Bearer " + KEY},
               {"Authorization": "Basic !!!!"}):
        hd = dict(hd, **{"Content-Type": MP})
        r = h.http(c.http_port, "POST", "/v3/%s/messages" % DOMAIN, body,
                   headers=hd)
        assert r.status == 401 and r.body == b"Forbidden", r
    hd = dict(basic(), **{"Content-Type": MP})
    r = h.http(c.http_port, "POST", "/v3/unknown.example.com/messages", body,
               headers=hd)
    assert r.status == 404 and "Domain not found" in r.json["message"], r
    r = h.http(c.http_port, "POST", "/v3/OTHER.example.org/messages", body,
               headers=hd)
    assert r.status == 200, r
    r = h.http(c.http_port, "POST", "/v3/bad_domain!/messages", body,
               headers=hd)
    assert r.status == 404, r
    r = h.http(c.http_port, "POST", "/v3/%s/events" % DOMAIN, body,
               headers=hd)
    assert r.status == 404, r
    r = h.http(c.http_port, "GET", "/v3/%s/messages" % DOMAIN, headers=hd)
    assert r.status == 405, r


def test_oversize_refused_on_the_head(c):
    head = ("POST /v3/%s/messages HTTP/1.1\r\nHost: x\r\n"
            "Authorization: %s\r\nContent-Type: %s\r\n"
            "Content-Length: %d\r\n\r\n" % (DOMAIN, basic()["Authorization"],
                                            MP, 1 << 30)).encode()
    status, body = h.raw_http(c.http_port, head)
    assert status == 413, body
    assert json.loads(body)["message"], body


def test_large_urlencoded_body(c):
    """A body over 64 KiB (worked on off the loop) whose message fits:
    urlencoded text spends three bytes on each byte of the message."""
    text = "é" * 12000  # 24,000 bytes of UTF-8, 72,000 %-encoded
    body = urllib.parse.urlencode({"from": "u@example.com",
                                   "to": "v@example.com", "text": text},
                                  quote_via=urllib.parse.quote)
    assert len(body) > 65536
    r = h.http(c.http_port, "POST", "/v3/%s/messages" % DOMAIN, body,
               headers=dict(basic(), **{
                   "Content-Type": "application/x-www-form-urlencoded"}))
    m = parsed(arrived(c, mg_id(r.status, r.body.decode())))
    assert m.get_content().rstrip("\r\n") == text
