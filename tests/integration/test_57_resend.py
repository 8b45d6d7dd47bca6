"""The resend connector against its stand-in (tests/fakes/fake_resend.py).

The shared cases (connector_cases.py: 503, hang, 429, refusal for good as
a 422 validation_error, 401 (Resend: 403 invalid_api_key) down until a
trial message passes, the key in no output) with rs (type resend) in
front of b (maildir).  Resend has no probe a sending-only key may call,
so a provider down for its account comes back by one trial message per
probe_interval_s.  Resend's own: the rich message reaches the stand-in as
the JSON Resend wants (it checks the key and the shape), recipients in
to/cc/bcc by the envelope and headers, names and subject decoded, the
attachment's bytes intact, the custom header passed, our message id as the
Idempotency-Key (the stand-in answers a replay with the same id and sends
nothing), and is delivered with the id; a Bcc-only message goes to b; a
429 daily_quota_exceeded is the account's.
"""

import base64
import json
import os
import sys
import urllib.error
import urllib.request

import connector_cases as cc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_resend  # noqa: E402

KEY = "re_PLANTED-resend-71fa3c-distinctive"

env = cc.module_env(lambda: fake_resend.FakeResend(KEY), "rs",
                    {"api_key_file": KEY},
                    {"type": "resend"})


class TestResend(cc.ConnectorCases):
    NAME, SECRETS = "rs", (KEY,)
    LIMIT = 40000000
    PROBE = False
    PERMANENT_WORDS = ("refused address", "name=validation_error")
    ACCOUNT_WORDS = ("status=403", "invalid_api_key")

    def test_rich_message(self, env):
        c, fake = env
        mid, m, rec = cc.rich_message(c, fake, "rs")
        b = rec["body"]
        assert b["to"] == ["jg@example.net"]
        assert b["cc"] == ["cc1@example.net"]
        assert b["bcc"] == ["hidden@example.net"]
        assert b["from"] in ('"Zoë Ämtmann" <zoe@example.com>',
                             "Zoë Ämtmann <zoe@example.com>"), b["from"]
        assert b["reply_to"] == "help@example.com"
        assert b["subject"] == "Grüße ✓ 1"
        assert "héllo text" in b["text"]
        assert "<p>héllo</p>" in b["html"]
        assert len(b["attachments"]) == 1
        a = b["attachments"][0]
        assert a["filename"] == "data.bin"
        assert a["content_type"] == "application/octet-stream"
        assert base64.b64decode(a["content"]) == cc.ATTACHMENT
        cc.assert_rich_headers(b["headers"], mid)
        assert rec["headers"]["Idempotency-Key"] == mid, rec["headers"]

    def test_idempotency_key_replay(self, env):
        """The same key with the same body (a resend after no answer)
        gets the first id back and is not sent twice."""
        c, fake = env
        rec = fake.received[-1]
        req = urllib.request.Request(
            fake.base_url + "/emails", data=rec["raw"],
            headers={"Authorization": "Bearer " + KEY,
                     "Content-Type": "application/json",
                     "Idempotency-Key": rec["headers"]["Idempotency-Key"]})
        n, replays = len(fake.received), fake.replays
        with urllib.request.urlopen(req, timeout=5) as r:
            assert json.loads(r.read())["id"] == rec["id"]
        assert len(fake.received) == n and fake.replays == replays + 1
        # Another body under the same key is refused, as Resend does.
        req.data = b'{"from":"a@example.com"}'
        try:
            urllib.request.urlopen(req, timeout=5)
            assert False, "a different body under the same key went through"
        except urllib.error.HTTPError as e:
            assert e.code == 409

    def test_no_to_goes_elsewhere(self, env):
        cc.bcc_only_goes_to_b(*env)

    def test_quota_account(self, env):
        c, fake = env
        m = cc.with_mode(fake, "quota", 8, c)
        assert m["attempts"][0]["provider"] == "rs", m
        assert m["attempts"][0]["outcome"] == "account", m
        assert "daily_quota_exceeded" in m["attempts"][0]["detail"], m
