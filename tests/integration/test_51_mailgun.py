"""The mailgun connector against its stand-in (tests/fakes/fake_mailgun.py).

The shared cases (connector_cases.py: 503, hang, 429, refusal for good,
401 down until a trial message passes, the key in no output) with mg
(type mailgun) in front of b (maildir).  Mailgun has no probe a sending
key may call (GET /v4/domains wants an account key), so a provider down
for its account comes back by one trial message per probe_interval_s.
Mailgun's own: the rich message reaches the stand-in as Mailgun wants it
(our MIME as built, every envelope recipient as a "to" field) and is
delivered with Mailgun's id; 30 messages reuse a few connections;
check-config bounds base_url and the timeouts.
"""

import os
import subprocess
import sys

import shivneri_harness as h
import connector_cases as cc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_mailgun  # noqa: E402

KEY = "mgkey-PLANTED-5b1e77c0ffee-distinctive"
DOMAIN = "mg.example.org"

env = cc.module_env(lambda: fake_mailgun.FakeMailgun(KEY, DOMAIN), "mg",
                    {"api_key_file": KEY},
                    {"type": "mailgun", "domain": DOMAIN})


class TestMailgun(cc.ConnectorCases):
    NAME, SECRETS = "mg", (KEY,)
    LIMIT = 25000000
    PROBE = False
    PERMANENT_WORDS = ("not a valid address",)
    ACCOUNT_WORDS = ("status=401", "Forbidden")

    def test_rich_message(self, env):
        c, fake = env
        mid, m, rec = cc.rich_message(c, fake, "mg", cc_name=None,
                                      text=False)
        assert sorted(rec["to"]) == cc.ALL_RCPTS
        cc.assert_rich_mime(rec["message"], mid)

    def test_connections_reused(self, env):
        """30 messages at up to 8 in flight: the agent keeps its
        connections to the API alive and reuses them, so the stand-in
        sees far fewer connections than requests."""
        c, fake = env
        before_conn, before_req = fake.connections, fake.requests
        ids = c.submit_many(30)
        c.wait_delivered(ids, timeout=30)
        assert all(c.msg(i)["provider"] == "mg" for i in ids)
        assert fake.requests - before_req == 30
        assert fake.connections - before_conn <= 8, fake.connections


def test_config_check(tmp_path):
    """base_url is only scheme://host[:port] and the timeouts are bounded
    numbers: check-config refuses the rest and names the line; a key given
    as env:VAR is taken."""
    secret = tmp_path / "agent.secret"
    h.Cluster.write_secret(str(secret), "x" * 64)

    def check(extra, env=None):
        lines = ["[server]", "data_dir = %s" % (tmp_path / "data"),
                 "agent_secret_file = %s" % secret, "",
                 "[provider.mg]", "type = mailgun",
                 "api_key_file = env:SHIVNERI_TEST_MG_KEY",
                 "domain = %s" % DOMAIN] + extra
        path = tmp_path / "mg.ini"
        path.write_text("\n".join(lines) + "\n")
        e = dict(os.environ, SHIVNERI_TEST_MG_KEY=KEY)
        p = subprocess.run([h.BIN, "check-config", "-c", str(path)],
                           env=e, capture_output=True, text=True,
                           timeout=h.scaled(20))
        return p.returncode, p.stdout + p.stderr

    rc, out = check(["base_url = http://127.0.0.1:8025"])
    assert rc == 0, out
    assert KEY not in out
    rc, out = check(["base_url = http://127.0.0.1:8025/v3"])
    assert rc == 2 and "base_url" in out and ":9" in out, out
    rc, out = check(["base_url = ftp://example.com"])
    assert rc == 2 and "base_url" in out, out
    rc, out = check(["request_timeout_ms = 0"])
    assert rc == 2 and "request_timeout_ms" in out, out
    rc, out = check(["connect_timeout_ms = 5s"])
    assert rc == 2 and "connect_timeout_ms" in out, out
