"""The sendgrid connector against its stand-in (tests/fakes/fake_sendgrid.py).

The shared cases (connector_cases.py: 503, hang, 429, refusal for good,
401 until the probe GET /v3/scopes passes, the key in no output) with sg
(type sendgrid) in front of b (maildir).  SendGrid's own: the rich message
reaches the stand-in as the JSON SendGrid wants (it checks the shape and
limits), recipients in to/cc/bcc by the envelope and headers, names and
subject decoded, HTML after text, the attachment's bytes intact, the
custom header passed, and is delivered with the X-Message-Id; Bcc-only
recipients each get a personalization of their own.
"""

import base64
import os
import sys

import shivneri_harness as h
import connector_cases as cc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_sendgrid  # noqa: E402

KEY = "SG.PLANTED-sendgrid-9d41ab-distinctive"

env = cc.module_env(lambda: fake_sendgrid.FakeSendGrid(KEY), "sg",
                    {"api_key_file": KEY},
                    {"type": "sendgrid"})


class TestSendGrid(cc.ConnectorCases):
    NAME, SECRETS = "sg", (KEY,)
    LIMIT = 29999999
    PERMANENT_WORDS = ("valid address",)
    ACCOUNT_WORDS = ("status=401", "authorization grant is invalid")

    def test_rich_message(self, env):
        c, fake = env
        mid, m, rec = cc.rich_message(c, fake, "sg")
        b = rec["body"]
        p = b["personalizations"]
        assert len(p) == 1
        assert p[0]["to"] == [{"email": "jg@example.net",
                               "name": "Jürgen Groß"}]
        assert p[0]["cc"] == [{"email": "cc1@example.net", "name": "Çelik"}]
        assert p[0]["bcc"] == [{"email": "hidden@example.net"}]
        assert b["from"] == {"email": "zoe@example.com",
                             "name": "Zoë Ämtmann"}
        assert b["reply_to"] == {"email": "help@example.com"}
        assert b["subject"] == "Grüße ✓ 1"
        assert [x["type"] for x in b["content"]] == ["text/plain",
                                                     "text/html"]
        assert "héllo text" in b["content"][0]["value"]
        assert "<p>héllo</p>" in b["content"][1]["value"]
        assert len(b["attachments"]) == 1
        a = b["attachments"][0]
        assert a["filename"] == "data.bin"
        assert a["type"] == "application/octet-stream"
        assert a["disposition"] == "attachment"
        assert base64.b64decode(a["content"]) == cc.ATTACHMENT
        assert b["headers"]["X-Campaign"] == "c1"
        cc.assert_rich_headers(b["headers"], mid)

    def test_bcc_only(self, env):
        """SendGrid needs a "to": Bcc-only recipients get a
        personalization each, with themselves as "to", so none sees
        another."""
        c, fake = env
        n = len(fake.received)
        mid = c.submit(h.message(7, to=[], bcc=["x1@example.net",
                                                "x2@example.net"]))
        m = cc.settled(c, mid)
        assert m["status"] == "delivered" and m["provider"] == "sg", m
        pers = fake.received[n]["body"]["personalizations"]
        assert sorted(p["to"][0]["email"] for p in pers) == \
            ["x1@example.net", "x2@example.net"]
        assert all(list(p) == ["to"] and len(p["to"]) == 1
                   for p in pers), pers
