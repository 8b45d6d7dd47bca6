"""The brevo connector against its stand-in (tests/fakes/fake_brevo.py).

The shared cases (connector_cases.py: 503, hang, refusal for good as a
400 invalid_parameter, 401 until the probe GET /v3/account passes, the
key in no output) with bv (type brevo) in front of b (maildir).  Brevo's
own: the rich message reaches the stand-in as the JSON Brevo wants (it
checks the api-key and the shape), recipients in to/cc/bcc by the
envelope and headers as {email, name}, names and subject decoded, the
attachment's bytes intact, the custom header passed, and is delivered
with the messageId; a Bcc-only message goes to b (Brevo requires a to); a
429 without Retry-After pauses the provider for x-sib-ratelimit-reset; a
402 (no credit) and an unvalidated sender (400 unauthorized) are the
account's; the table's other rows; a 201 without an id is delivered.
"""

import base64
import datetime
import os
import sys

import pytest

import shivneri_harness as h
import connector_cases as cc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_brevo  # noqa: E402

KEY = "xkeysib-PLANTED-brevo-9d41b6-distinctive"

env = cc.module_env(lambda: fake_brevo.FakeBrevo(KEY), "bv",
                    {"api_key_file": KEY}, {"type": "brevo"})


class TestBrevo(cc.ConnectorCases):
    NAME, SECRETS = "bv", (KEY,)
    LIMIT = 20000000
    PERMANENT_WORDS = ("code=invalid_parameter",)
    ACCOUNT_WORDS = ("code=unauthorized",)

    def test_rich_message(self, env):
        c, fake = env
        mid, m, rec = cc.rich_message(c, fake, "bv", filename="data.pdf",
                                      content_type="application/pdf")
        b = rec["body"]
        assert b["sender"] == {"email": "zoe@example.com",
                               "name": "Zoë Ämtmann"}, b["sender"]
        assert b["to"] == [{"email": "jg@example.net",
                            "name": "Jürgen Groß"}]
        assert b["cc"] == [{"email": "cc1@example.net", "name": "Çelik"}]
        assert b["bcc"] == [{"email": "hidden@example.net"}]
        assert b["replyTo"] == {"email": "help@example.com"}
        assert b["subject"] == "Grüße ✓ 1"
        assert "héllo text" in b["textContent"]
        assert "<p>héllo</p>" in b["htmlContent"]
        assert len(b["attachment"]) == 1
        a = b["attachment"][0]
        assert a["name"] == "data.pdf"
        assert base64.b64decode(a["content"]) == cc.ATTACHMENT
        cc.assert_rich_headers(b["headers"], mid)

    def test_no_to_goes_elsewhere(self, env):
        cc.bcc_only_goes_to_b(*env)

    def test_429_throttled(self, env):
        """No Retry-After: the pause is x-sib-ratelimit-reset's 3 s, not
        the 1 s a throttle without a wait gets; the try is not counted."""
        c, fake = env
        fake.mode, fake.retry_after = "429", "3"
        try:
            t0 = datetime.datetime.now(datetime.timezone.utc)
            mid = c.submit(h.message(5))
            p = c.wait_state("bv", "paused", timeout=h.scaled(5))
            m = cc.settled(c, mid)
        finally:
            fake.mode = "ok"
        assert m["status"] == "delivered" and m["provider"] == "b", m
        assert m["attempts"][0]["provider"] == "bv", m
        assert m["attempts"][0]["outcome"] == "throttled", m
        assert m["attempt_count"] == 1, m
        until = datetime.datetime.fromisoformat(
            p["paused_until"].replace("Z", "+00:00"))
        assert (until - t0).total_seconds() >= 2, (t0, p)
        cc.agent_outcome(c, "bv", mid, "throttled")

    @pytest.mark.parametrize("mode,n,words", [
        ("credit", 8, "not_enough_credits"),
        ("sender", 9, "Validate your sender"),
    ])
    def test_account_rows(self, env, mode, n, words):
        """402 (no credit) and an unvalidated sender: down until the
        probe passes once the stand-in is back to normal."""
        c, fake = env
        fake.mode = mode
        try:
            cc.assert_account(c, "bv", cc.settled(c, c.submit(
                h.message(n))), (words,))
        finally:
            fake.mode = "ok"
        c.wait_state("bv", "up", timeout=h.scaled(10))

    @pytest.mark.parametrize("status,body,outcome", [
        (403, {"code": "permission_denied", "message": "IP not allowed"},
         "account"),
        (413, {"code": "bad_request", "message": "Request too large"},
         "too_large"),
        (404, {"code": "document_not_found", "message": "Not found"},
         "transient"),
        (500, {"code": "internal_error", "message": "oops"}, "transient"),
    ])
    def test_other_rows(self, env, status, body, outcome):
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
        assert m["attempts"][0]["provider"] == "bv", m
        assert m["attempts"][0]["outcome"] == outcome, m
        assert "code=" + body["code"] in m["attempts"][0]["detail"], m
        if outcome == "permanent":
            assert m["status"] == "failed" and len(m["attempts"]) == 1, m
        else:
            assert m["status"] == "delivered" and m["provider"] == "b", m

    def test_201_without_id_delivered(self, env):
        """Accepted without a messageId: delivered (sending again would
        duplicate), with no provider id."""
        c, fake = env
        fake.answer = (201, {})
        try:
            m = cc.settled(c, c.submit(h.message(12)))
        finally:
            fake.answer = None
        assert m["status"] == "delivered" and m["provider"] == "bv", m
        assert not m["provider_message_id"], m
