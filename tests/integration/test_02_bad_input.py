"""Hostile and broken submissions: each is refused with the right status
and a SPEC.md error body, stores nothing, and leaves the server serving."""

import base64
import json

import pytest

import shivneri_harness as h

MAX = 65536


@pytest.fixture(scope="module")
def cl(module_cluster_factory):
    c = module_cluster_factory(providers=("a", "b"),
                               server_extra={"max_message_bytes": MAX})
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")
    c.baseline = c.stats()
    return c


def good(**kw):
    return h.message(0, **kw)


def without(key):
    m = good()
    del m[key]
    return m


def attachment(**kw):
    a = {"filename": "a.txt", "content_type": "text/plain",
         "content_base64": base64.b64encode(b"hello").decode()}
    a.update(kw)
    return a


def raw(obj_text):
    return obj_text.encode("utf-8") if isinstance(obj_text, str) else obj_text


BAD_400 = [
    ("not_json", b"this is not json"),
    ("truncated_json", b'{"from": "a@example.com", "to": ['),
    ("json_array", b'[{"from": "a@example.com"}]'),
    ("json_string", b'"hello"'),
    ("empty_body", b""),
    ("to_number", good(to=42)),
    ("to_list_of_numbers", good(to=[1, 2])),
    ("subject_list", good(subject=["a", "b"])),
    ("headers_list", good(headers=["X-A: b"])),
    ("header_value_number", good(headers={"X-A": 5})),
    ("attachments_not_list", good(attachments={"filename": "a"})),
    ("text_number", good(text=12)),
    ("cc_string_number", good(cc=[None])),
    ("no_recipient", good(to=[])),
    ("no_to_key", without("to")),
    ("no_from", without("from")),
    ("no_body", {"from": "a@example.com", "to": ["b@example.net"],
                 "subject": "x"}),
    ("from_nope", good(**{"from": "nope"})),
    ("to_no_domain", good(to=["a@"])),
    ("to_no_local", good(to=["@b"])),
    ("to_space", good(to=["a b@c"])),
    ("cc_bad", good(cc=["not an address"])),
    ("bcc_bad", good(bcc=["x@"])),
    ("reply_to_bad", good(reply_to="@@")),
    ("crlf_subject", good(subject="hi\r\nBcc: evil@example.com")),
    ("lf_subject", good(subject="hi\nX-Evil: 1")),
    ("crlf_from_name", good(**{"from": "Ann\r\nBcc: e@x.com <ann@example.com>"})),
    ("crlf_header_value", good(headers={"X-A": "v\r\nBcc: e@example.com"})),
    ("crlf_header_name", good(headers={"X-A\r\nBcc": "e@example.com"})),
    ("colon_header_name", good(headers={"X-A: b": "c"})),
    ("space_header_name", good(headers={"X A": "c"})),
    ("empty_header_name", good(headers={"": "c"})),
    ("crlf_attachment_filename",
     good(attachments=[attachment(filename="a\r\nBcc: e@x.com.txt")])),
    ("crlf_attachment_type",
     good(attachments=[attachment(content_type="text/plain\r\nX-E: 1")])),
    ("crlf_reply_to", good(reply_to="help@example.com\r\nBcc: e@x.com")),
    ("nul_subject", good(subject="a\u0000b")),
    ("nul_header", good(headers={"X-A": "a\u0000b"})),
    ("invalid_utf8_body",
     b'{"from": "a@example.com", "to": ["b@example.net"], "subject": "s",'
     b' "text": "caf\xc3\x28 \xff\xfe"}'),
    ("bad_base64", good(attachments=[attachment(content_base64="!!!not*b64")])),
    ("attachment_no_content",
     good(attachments=[{"filename": "a.txt", "content_type": "text/plain"}])),
    ("forbidden_bcc_header", good(headers={"Bcc": "e@example.com"})),
    ("bad_message_id", good(headers={"Message-ID": "x@y"})),
    ("bad_date_header", good(headers={"Date": "yesterday"})),
    ("forbidden_from_header", good(headers={"From": "e@example.com"})),
    ("forbidden_lowercase", good(headers={"mime-version": "1.0"})),
]


@pytest.mark.parametrize("name,body", BAD_400, ids=[b[0] for b in BAD_400])
def test_bad_submission_400(cl, name, body):
    if isinstance(body, dict):
        body = json.dumps(body).encode("utf-8")
    r = h.http(cl.http_port, "POST", "/v1/messages", body=body)
    h.assert_error(r, 400, {"invalid_json", "invalid_field",
                            "missing_field"})
    assert cl.get("/healthz").status == 200


def test_oversize_message_413(cl):
    m = good(text="x" * (MAX + 1024))
    r = cl.post("/v1/messages", m)
    h.assert_error(r, 413, {"too_large"})


def test_oversize_attachment_413(cl):
    blob = base64.b64encode(b"\x00" * (MAX * 4 // 5)).decode()
    r = cl.post("/v1/messages",
                good(attachments=[attachment(content_base64=blob,
                                             content_type="application/"
                                             "octet-stream")]))
    h.assert_error(r, 413, {"too_large"})


def body_cap(max_message_bytes, max_recipients=1000):
    """The HTTP body cap docs/http-api.md derives from max_message_bytes:
    9/4 of it, plus bcc addresses (never in the message, up to 998 bytes
    each written as 6-byte escapes), plus 64 KiB for tags and punctuation."""
    return (max_message_bytes // 4 * 9 + 9 +
            max_recipients * (6 * 998 + 4) + 65536)


def body_of(n):
    """A JSON submission of exactly n bytes, mostly text."""
    head = b'{"from": "a@example.com", "to": ["b@example.net"], "text": "'
    return head + b"y" * (n - len(head) - 2) + b'"}'


def post_raw(port, body):
    head = ("POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % len(body)).encode()
    return h.raw_http(port, head, body)


def test_huge_request_body_413(cl):
    """The HTTP layer's cap is the documented one: one byte over it gets a
    413 on the head alone (our JSON: the answer comes before the body is
    read); a body of exactly the cap is read and built, and its message is
    refused as too_large."""
    cap = body_cap(MAX)
    status, rest = post_raw(cl.http_port, body_of(cap + 1))
    assert status == 413, (status, rest[:200])
    assert json.loads(rest)["error"]["code"] == "too_large", rest[:200]
    status, rest = post_raw(cl.http_port, body_of(cap))
    assert status == 413, (status, rest[:200])
    assert json.loads(rest)["error"]["code"] == "too_large", rest[:200]
    assert cl.get("/healthz").status == 200


def test_wrong_content_type_415(cl):
    r = h.http(cl.http_port, "POST", "/v1/messages",
               body=json.dumps(good()).encode(),
               headers={"Content-Type": "text/plain"})
    h.assert_error(r, 415, {"unsupported_media_type"})


def test_unknown_names_404(cl):
    h.assert_error(cl.get("/v1/messages/01HZZZZZZZZZZZZZZZZZZZZZZZ"), 404,
                   {"not_found"})
    h.assert_error(cl.get("/v1/messages/..%2F..%2Fetc%2Fpasswd"), 404,
                   {"not_found"})
    h.assert_error(cl.post("/v1/providers/zzz/disable"), 404, {"not_found"})
    h.assert_error(cl.post("/v1/providers/a%0d%0aX/enable"), 404,
                   {"not_found"})


def test_one_limit_both_sides(make_cluster):
    """Defect 3, HTTP side: one limit, max_message_bytes, on the built
    message.  A JSON body far over twice the limit (the old HTTP cap) whose
    message fits is accepted and delivered; a message just over the limit
    is refused 413 too_large with an error body and stores nothing."""
    small = 8192
    c = make_cluster(providers=("a",),
                     server_extra={"max_message_bytes": small})
    c.start_server()
    c.start_agent("a")
    # 400 bcc entries with long display names: about 100 KB of JSON,
    # none of it in the message (bcc is envelope only).
    bcc = ["%s <u%d@example.org>" % ("B" * 200, i) for i in range(400)]
    m = good(bcc=bcc)
    assert len(json.dumps(m)) > 2 * small + 65536
    mid = c.submit(m)
    # Lines of 70 bytes: 7bit, so the message is the text plus headers.
    line = "x" * 69 + "\n"
    fits = good(text=line * ((small - 1024) // 71))
    mid2 = c.submit(fits)
    c.wait_delivered([mid, mid2])
    before = c.stats()
    over = good(text=line * ((small - 100) // 71))
    h.assert_error(c.post("/v1/messages", over), 413, {"too_large"})
    r = h.http(c.http_port, "POST", "/v1/messages",
               body=json.dumps(good(text="z" * (small + 1))).encode())
    h.assert_error(r, 413, {"too_large"})
    assert c.stats() == before
    assert h.maildir_count(c.maildir("a")) == 2


def test_zz_nothing_stored(cl):
    """Runs last in this module: the server is alive, the counts are those
    of the start and no maildir holds a file."""
    assert cl.get("/healthz").status == 200
    assert cl.stats() == cl.baseline
    for name in ("a", "b"):
        assert h.maildir_count(cl.maildir(name)) == 0, name
        assert cl.provider(name)["state"] == "up"
    assert cl.server.alive()
