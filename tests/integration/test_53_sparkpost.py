"""The sparkpost connector against its stand-in (tests/fakes/fake_sparkpost.py).

The shared cases (connector_cases.py: 503, hang, 429, refusal for good,
401 until the probe GET /api/v1/account passes, the key in no output)
with sp (type sparkpost) in front of b (maildir).  SparkPost's own: the
rich message reaches the stand-in as raw MIME (content.email_rfc822) with
every envelope recipient and is delivered with SparkPost's id; a partial
rejection is delivered with the count in the detail; a 420 (a sending
limit) is the account's.
"""

import os
import sys

import shivneri_harness as h
import connector_cases as cc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_sparkpost  # noqa: E402

KEY = "PLANTED-sparkpost-0c8e3a-distinctive"

env = cc.module_env(lambda: fake_sparkpost.FakeSparkPost(KEY), "sp",
                    {"api_key_file": KEY},
                    {"type": "sparkpost"})


class TestSparkPost(cc.ConnectorCases):
    NAME, SECRETS = "sp", (KEY,)
    LIMIT = 20000000
    PERMANENT_WORDS = ("no recipient accepted",)
    ACCOUNT_WORDS = ("status=401", "Unauthorized")

    def test_rich_message(self, env):
        c, fake = env
        mid, m, rec = cc.rich_message(c, fake, "sp", cc_name=None,
                                      text=False)
        b = rec["body"]
        assert sorted(r["address"]["email"]
                      for r in b["recipients"]) == cc.ALL_RCPTS
        assert list(b["content"]) == ["email_rfc822"]
        cc.assert_rich_mime(b["content"]["email_rfc822"].encode(), mid)

    def test_partial_delivered(self, env):
        """Some recipients rejected: SparkPost sent to the others, so the
        message is delivered (resending would duplicate) and the detail
        says how many were rejected."""
        c, fake = env
        fake.reject = {cc.REFUSED}
        try:
            mid = c.submit(h.message(9, to=["ok@example.net", cc.REFUSED]))
            m = cc.settled(c, mid)
        finally:
            fake.reject = set()
        assert m["status"] == "delivered" and m["provider"] == "sp", m
        assert [a["provider"] for a in m["attempts"]] == ["sp"], m
        assert "rejected 1" in (m["attempts"][0]["detail"] or ""), m

    def test_420_account(self, env):
        c, fake = env
        m = cc.with_mode(fake, "420", 8, c)
        assert m["attempts"][0]["provider"] == "sp", m
        assert m["attempts"][0]["outcome"] == "account", m
        cc.agent_outcome(c, "sp", m["id"], "account")
