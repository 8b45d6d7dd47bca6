"""The mailjet connector against its stand-in (tests/fakes/fake_mailjet.py).

The shared cases (connector_cases.py: 503, hang, 429, refusal for good as
a 400 mj-0013, 401 until the probe GET /v3/REST/sender passes, the key,
the secret and their Basic encoding in no output) with mj (type mailjet,
Basic auth key:secret) in front of b (maildir).  Mailjet's own: the rich
message reaches the stand-in as one entry of Send API v3.1's "Messages"
(it checks the auth and the shape), recipients in To/Cc/Bcc by the
envelope and headers as {Email, Name}, names and subject decoded, the
attachment's bytes intact, the custom header passed, our message id as
CustomID, and is delivered with the MessageIDs of every recipient; an
answer that leaves a recipient out is still delivered, the count in the
detail; a Bcc-only message and one over 50 recipients go to b; an
unauthorized sender (send-0008) is the account's; the table's other rows.
"""

import base64
import os
import sys

import pytest

import shivneri_harness as h
import connector_cases as cc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_mailjet  # noqa: E402

KEY = "PLANTEDmailjetkey0c83e1distinctive"
SECRET = "PLANTEDmailjetsecret5fa27bdistinctive"

env = cc.module_env(lambda: fake_mailjet.FakeMailjet(KEY, SECRET), "mj",
                    {"api_key_file": KEY, "secret_key_file": SECRET},
                    {"type": "mailjet"})


def listed_ids(answer):
    return ",".join(str(r["MessageID"]) for f in ("To", "Cc", "Bcc")
                    for r in answer.get(f, []))


class TestMailjet(cc.ConnectorCases):
    NAME = "mj"
    LIMIT = 15000000
    SECRETS = (KEY, SECRET,
               base64.b64encode(("%s:%s" % (KEY, SECRET)).encode()).decode())
    PERMANENT_WORDS = ("code=mj-0013",)
    ACCOUNT_WORDS = ("code=mj-0001",)

    def test_rich_message(self, env):
        c, fake = env
        mid, m, rec = cc.rich_message(
            c, fake, "mj", id_of=lambda rec: listed_ids(rec["answer"]))
        assert len(m["provider_message_id"].split(",")) == 3, m
        b = rec["body"]
        assert b["From"] == {"Email": "zoe@example.com",
                             "Name": "Zoë Ämtmann"}
        assert b["To"] == [{"Email": "jg@example.net",
                            "Name": "Jürgen Groß"}]
        assert b["Cc"] == [{"Email": "cc1@example.net", "Name": "Çelik"}]
        assert b["Bcc"] == [{"Email": "hidden@example.net"}]
        assert b["ReplyTo"] == {"Email": "help@example.com"}
        assert b["Subject"] == "Grüße ✓ 1"
        assert b["CustomID"] == mid
        assert "héllo text" in b["TextPart"]
        assert "<p>héllo</p>" in b["HTMLPart"]
        assert "InlinedAttachments" not in b
        assert len(b["Attachments"]) == 1
        a = b["Attachments"][0]
        assert a["Filename"] == "data.bin"
        assert a["ContentType"] == "application/octet-stream"
        assert base64.b64decode(a["Base64Content"]) == cc.ATTACHMENT
        cc.assert_rich_headers(b["Headers"], mid)

    def test_partial_answer_delivered(self, env):
        """Mailjet lists each recipient it took; one left out is not sent
        to again (the others would get a duplicate): delivered, counted."""
        c, fake = env
        fake.omit = {"cc2@example.net"}
        try:
            m = cc.settled(c, c.submit(h.message(10,
                                                 cc=["cc2@example.net"])))
        finally:
            fake.omit = set()
        assert m["status"] == "delivered" and m["provider"] == "mj", m
        assert m["provider_message_id"] == \
            listed_ids(fake.received[-1]["answer"])
        assert "accepted 1 of 2" in (m["attempts"][0]["detail"] or ""), m

    def test_no_to_goes_elsewhere(self, env):
        cc.bcc_only_goes_to_b(*env)

    def test_unauthorized_sender_account(self, env):
        c, fake = env
        fake.mode = "sender"
        try:
            cc.assert_account(c, "mj", cc.settled(c, c.submit(
                h.message(9))), ("code=send-0008",))
        finally:
            fake.mode = "ok"
        c.wait_state("mj", "up", timeout=h.scaled(10))

    @pytest.mark.parametrize("status,body,outcome,code", [
        (200, {"Messages": [{"Status": "error", "Errors": []}]},
         "transient", "-"),
        (413, {"ErrorIdentifier": "x", "ErrorCode": "mj-0007",
               "StatusCode": 413, "ErrorMessage": "Request too large"},
         "too_large", "mj-0007"),
        (403, {"ErrorIdentifier": "x", "ErrorCode": "mj-0015",
               "StatusCode": 403, "ErrorMessage": "Forbidden"},
         "account", "mj-0015"),
        (500, {"ErrorIdentifier": "x", "StatusCode": 500,
               "ErrorMessage": "Internal error"}, "transient", "-"),
    ])
    def test_other_rows(self, env, status, body, outcome, code):
        """The table's other rows, answered as such by the stand-in."""
        c, fake = env
        fake.answer = (status, body)
        # A 413 lowers the provider's limit below that message's size
        # until its agent registers again (docs/internals/dispatch.md,
        # "Size limits"): a larger one, so that the next rows' messages
        # still fit.
        msg = h.message(11, text="x" * 8000) if status == 413 else \
            h.message(11)
        try:
            m = cc.settled(c, c.submit(msg))
        finally:
            fake.answer = None
        assert m["attempts"][0]["provider"] == "mj", m
        assert m["attempts"][0]["outcome"] == outcome, m
        assert "code=%s:" % code in m["attempts"][0]["detail"], m
        if outcome == "permanent":
            assert m["status"] == "failed" and len(m["attempts"]) == 1, m
        else:
            assert m["status"] == "delivered" and m["provider"] == "b", m

    def test_over_50_recipients_elsewhere(self, env):
        """More than Mailjet's 50 recipients: refused by the connector
        (transient), b delivers it, nothing reached the stand-in."""
        c, fake = env
        n = len(fake.received)
        m = cc.settled(c, c.submit(h.message(
            13, to=["r%d@example.net" % i for i in range(51)])))
        assert m["status"] == "delivered" and m["provider"] == "b", m
        assert m["attempts"][0]["provider"] == "mj", m
        assert len(fake.received) == n
