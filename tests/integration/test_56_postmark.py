"""The postmark connector against its stand-in (tests/fakes/fake_postmark.py).

The shared cases (connector_cases.py: 503, hang, 429, refusal for good as
a 422 ErrorCode 406, 401 until the probe GET /server passes, the token in
no output) with pm (type postmark) in front of b (maildir).  Postmark's
own: the rich message reaches the stand-in as the JSON Postmark wants (it
checks the token and the shape), recipients in To/Cc/Bcc by the envelope
and headers, names and subject decoded, the attachment's bytes intact,
the custom header passed, the message stream set, and is delivered with
the MessageID; a message with no envelope recipient in To (which Postmark
requires) goes to b.
"""

import base64
import os
import sys

import connector_cases as cc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_postmark  # noqa: E402

KEY = "PM-PLANTED-postmark-5e2c7f-distinctive"

env = cc.module_env(lambda: fake_postmark.FakePostmark(KEY), "pm",
                    {"server_token_file": KEY},
                    {"type": "postmark", "message_stream": "outbound"})


class TestPostmark(cc.ConnectorCases):
    NAME, SECRETS = "pm", (KEY,)
    LIMIT = 10000000
    PERMANENT_WORDS = ("inactive", "code=406")
    ACCOUNT_WORDS = ("status=401", "code=10")

    def test_rich_message(self, env):
        c, fake = env
        mid, m, rec = cc.rich_message(c, fake, "pm")
        b = rec["body"]
        assert b["To"] == "jg@example.net"
        assert b["Cc"] == "cc1@example.net"
        assert b["Bcc"] == "hidden@example.net"
        assert b["From"] in ('"Zoë Ämtmann" <zoe@example.com>',
                             "Zoë Ämtmann <zoe@example.com>"), b["From"]
        assert b["ReplyTo"] == "help@example.com"
        assert b["Subject"] == "Grüße ✓ 1"
        assert b["MessageStream"] == "outbound"
        assert "héllo text" in b["TextBody"]
        assert "<p>héllo</p>" in b["HtmlBody"]
        assert len(b["Attachments"]) == 1
        a = b["Attachments"][0]
        assert a["Name"] == "data.bin"
        assert a["ContentType"] == "application/octet-stream"
        assert base64.b64decode(a["Content"]) == cc.ATTACHMENT
        cc.assert_rich_headers({x["Name"]: x["Value"]
                                for x in b["Headers"]}, mid)

    def test_no_to_goes_elsewhere(self, env):
        cc.bcc_only_goes_to_b(*env)
