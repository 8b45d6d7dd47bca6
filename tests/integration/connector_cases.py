"""The cases every HTTP API connector's test shares (test_51 ... test_59).

Each such test runs one server with two providers under the priority
scheduler: NAME (the connector under test, priority 1, pointed at its
stand-in in tests/fakes/) in front of b (maildir, priority 2), so every
message is offered to NAME first and b shows where a message went
instead.  A test file builds its module fixture with module_env() and
puts its cases in a class derived from ConnectorCases, which brings the
cases whose meaning is the same for every API:

- GET /v1/providers shows the type's documented size limit (LIMIT,
  src/agent/conn_limits.h) capped at the server's max_message_bytes;
- a 503 is transient and b delivers the message;
- a hung API (no answer) ends as ambiguous after request_timeout_ms and b
  delivers;
- a 429 is throttled (the provider pauses, nothing fails);
- a refusal for good (the stand-in's `reject`) fails the message, tried
  nowhere else, with the API's words in the detail;
- a 401 takes the provider down (reason "account: ...") until its probe
  (the API's cheap authenticated call, seen and refused by the stand-in
  while the key is refused) or, for an API without one, a trial message
  passes once the stand-in takes the key again; then it delivers again;
- the planted key appears in no file of the cluster's folder (logs, the
  .ini, the database) and in no API answer (run last).

The subclass's own cases (run after these, in file order) hold what is
the API's: the rich message (cc, bcc, reply-to, HTML, an attachment,
non-ASCII names, a custom header; rich_message() sends it) compared
field by field with what the stand-in received, and the API's own
classes.  Every wait has a deadline (harness wait_for).
"""

import base64
import email.parser
import email.policy
import os
import subprocess

import pytest

import shivneri_harness as h

ATTACHMENT = bytes(range(256)) * 4
REFUSED = "refused@example.net"


def start_cluster(factory, fake, name, secrets, section):
    """A started cluster: the server, NAME's agent (section's keys on top
    of the common ones; secrets {key: planted secret}, each written to a
    file the key names) and b's."""
    c = factory(providers=(name, "b"),
                server_extra={"scheduler": "priority"})
    c.keyfiles = {}
    for k, secret in secrets.items():
        c.keyfiles[k] = os.path.join(c.dir, "%s.%s" % (name, k))
        c.write_secret(c.keyfiles[k], secret)

    def write_config():
        p = {"spawn": "no", "priority": 1, "max_in_flight": 8,
             "probe_interval_s": 1,
             "base_url": fake.base_url, "connect_timeout_ms": 2000,
             "request_timeout_ms": int(h.scaled(1000))}
        p.update(c.keyfiles)
        p.update(section)
        b = c.provider_section("b")
        b.update(priority=2)
        with open(c.config_path, "w") as f:
            f.write(c.render(c.server_section(), {name: p, "b": b}))
    c.write_config = write_config
    c.write_config()
    c.start_server()
    c.start_agent(name)
    c.start_agent("b")
    return c


def module_env(make_fake, name, secrets, section):
    """The module fixture `env`, (cluster, fake): make_fake() is the
    stand-in, not yet started; secrets as start_cluster's."""
    @pytest.fixture(scope="module")
    def env(module_cluster_factory):
        fake = make_fake().start()
        try:
            yield start_cluster(module_cluster_factory, fake, name,
                                secrets, section), fake
        finally:
            fake.stop()
    return env


def settled(c, mid, timeout=15):
    """The message once delivered or failed."""
    def cond():
        m = c.msg(mid)
        return m if m["status"] in ("delivered", "failed") else None
    return h.wait_for(cond, timeout, "message %s to settle" % mid)


def agent_outcome(c, name, mid, outcome):
    """NAME's agent logged outcome for mid (its connector's class)."""
    def cond():
        with open(c.agents[name].log_path, errors="replace") as f:
            return any(mid in ln and "outcome=" + outcome in ln for ln in f)
    return h.wait_for(cond, 5, "agent log: %s outcome=%s" % (mid, outcome))


def rich_message(c, fake, name, cc_name="Çelik", text=True,
                 filename="data.bin", content_type="application/octet-stream",
                 id_of=lambda rec: rec["id"]):
    """Sends the rich message; returns (message id, the message as the
    API shows it, what the stand-in recorded).  It went to NAME only,
    delivered with the id the stand-in gave (id_of(record))."""
    fields = {"from": "Zoë Ämtmann <zoe@example.com>",
              "to": ["Jürgen Groß <jg@example.net>"],
              "cc": ["%s <cc1@example.net>" % cc_name if cc_name
                     else "cc1@example.net"],
              "bcc": ["hidden@example.net"],
              "reply_to": "help@example.com",
              "subject": "Grüße ✓ 1", "html": "<p>héllo</p>",
              "headers": {"X-Campaign": "c1"},
              "attachments": [{"filename": filename,
                               "content_type": content_type,
                               "content_base64":
                                   base64.b64encode(ATTACHMENT).decode()}]}
    if text:
        fields["text"] = "héllo text\n"
    n = len(fake.received)
    mid = c.submit(h.message(1, **fields))
    m = settled(c, mid)
    assert m["status"] == "delivered" and m["provider"] == name, m
    assert len(fake.received) == n + 1
    rec = fake.received[n]
    assert m["provider_message_id"] == id_of(rec), (m, rec)
    return mid, m, rec


ALL_RCPTS = sorted(["jg@example.net", "cc1@example.net",
                    "hidden@example.net"])


def assert_rich_mime(raw, mid):
    """For an API that takes our MIME as built: raw (bytes) is the rich
    message, every field intact and no Bcc header."""
    got = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        raw)
    assert got["Subject"] == "Grüße ✓ 1"
    assert got["From"].addresses[0].display_name == "Zoë Ämtmann"
    assert got["To"].addresses[0].display_name == "Jürgen Groß"
    assert got["Cc"].addresses[0].addr_spec == "cc1@example.net"
    assert got["Bcc"] is None
    assert got["Reply-To"].addresses[0].addr_spec == "help@example.com"
    assert got["X-Campaign"] == "c1"
    assert mid in got["Message-ID"]
    html = got.get_body(("html",))
    assert html is not None and "<p>héllo</p>" in html.get_content()
    atts = list(got.iter_attachments())
    assert len(atts) == 1 and atts[0].get_filename() == "data.bin"
    assert atts[0].get_content() == ATTACHMENT


def assert_rich_headers(hdrs, mid):
    """For an API that takes headers apart ({name: value}): the custom
    header and our Message-ID passed, the ones the API sets left out."""
    low = {k.lower(): v for k, v in hdrs.items()}
    assert low["x-campaign"] == "c1", hdrs
    assert mid in low["message-id"], hdrs
    assert "to" not in low and "subject" not in low, hdrs


def bcc_only_goes_to_b(c, fake):
    """For an API that requires a To: a Bcc-only message is refused by
    the connector (transient) and b delivers it, nobody's Bcc exposed."""
    n = len(fake.received)
    m = settled(c, c.submit(h.message(7, to=[], bcc=["x1@example.net"])))
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert len(fake.received) == n


def assert_account(c, name, m, words=()):
    """m's try at NAME was the account's (with words in its detail), b
    took it at once, and NAME is down with reason "account: ..."."""
    assert m["status"] == "delivered" and m["provider"] == "b", m
    assert m["attempts"][0]["provider"] == name, m
    assert m["attempts"][0]["outcome"] == "account", m
    for w in words:
        assert w in m["attempts"][0]["detail"], (w, m)
    agent_outcome(c, name, m["id"], "account")
    p = c.wait_state(name, "down", timeout=h.scaled(5))
    assert (p["reason"] or "").startswith("account: "), p


def with_mode(fake, mode, n, c, **kw):
    """Submits message n with the stand-in in mode; the settled message."""
    fake.mode = mode
    for k, v in kw.items():
        setattr(fake, k, v)
    try:
        return settled(c, c.submit(h.message(n)))
    finally:
        fake.mode = "ok"


class ConnectorCases:
    """The shared cases; a subclass sets NAME, KEY and the class words."""

    NAME = None
    SECRETS = ()            # the planted secrets, found in no output
    PROBE = True            # the connector probes (else: trial message)
    PERMANENT_WORDS = ()    # in the detail of the refusal for good
    ACCOUNT_WORDS = ()      # in the detail of the 401
    LIMIT = None            # the type's default limit (conn_limits.h)

    def __init_subclass__(cls, **kw):
        """pytest runs a base class's cases first, then the subclass's in
        file order: the key check, added to the subclass after its own
        cases, thus runs last."""
        super().__init_subclass__(**kw)
        cls.test_key_never_shown = ConnectorCases._key_never_shown

    @pytest.fixture(autouse=True)
    def _provider_up(self, env):
        """Each case starts with the provider up: a 429 pauses it for its
        Retry-After and a 401 takes it down until it is back."""
        env[0].wait_state(self.NAME, "up", timeout=h.scaled(10))

    def test_type_limit_shown(self, env):
        """GET /v1/providers shows the type's documented limit (the one
        table, src/agent/conn_limits.h) as NAME's, capped at the server's
        max_message_bytes (b, a maildir, has none of its own)."""
        c, _ = env
        server_max = c.provider("b")["max_message_bytes"]
        assert server_max == 25 * 1024 * 1024  # the server's default
        p = c.provider(self.NAME)
        assert p["max_message_bytes"] == min(self.LIMIT, server_max), p
        assert p["max_message_bytes_learned_until"] is None, p

    def test_permanent_fails_here_only(self, env):
        c, fake = env
        fake.reject = {REFUSED}
        try:
            m = settled(c, c.submit(h.message(2, to=[REFUSED])))
        finally:
            fake.reject = set()
        assert m["status"] == "failed", m
        assert [a["provider"] for a in m["attempts"]] == [self.NAME], m
        assert m["attempts"][0]["outcome"] == "permanent", m
        for w in self.PERMANENT_WORDS:
            assert w in m["attempts"][0]["detail"], (w, m)

    def test_503_moves_to_b(self, env):
        c, fake = env
        m = with_mode(fake, "503", 3, c)
        assert m["status"] == "delivered" and m["provider"] == "b", m
        assert m["attempts"][0]["provider"] == self.NAME, m
        assert m["attempts"][0]["outcome"] == "transient", m
        agent_outcome(c, self.NAME, m["id"], "transient")

    def test_empty_502_moves_to_b(self, env):
        """A proxy's 502 with no body at all: transient, in no words but
        the status.  (An agent that died on it left a lost attempt.)"""
        c, fake = env
        m = with_mode(fake, "502empty", 12, c)
        assert m["status"] == "delivered" and m["provider"] == "b", m
        assert m["attempts"][0]["provider"] == self.NAME, m
        assert m["attempts"][0]["outcome"] == "transient", m
        assert "status=502" in m["attempts"][0]["detail"], m
        agent_outcome(c, self.NAME, m["id"], "transient")

    def test_hang_ambiguous(self, env):
        c, fake = env
        m = with_mode(fake, "hang", 4, c)
        assert m["status"] == "delivered" and m["provider"] == "b", m
        assert m["attempts"][0]["provider"] == self.NAME, m
        assert m["attempts"][0]["outcome"] == "ambiguous", m
        agent_outcome(c, self.NAME, m["id"], "ambiguous")

    def test_reset_ambiguous(self, env):
        """The connection reset after the request went out: no answer
        can come, so the provider may have the message: ambiguous, and
        delivered elsewhere."""
        c, fake = env
        m = with_mode(fake, "reset", 11, c)
        assert m["status"] == "delivered" and m["provider"] == "b", m
        assert m["attempts"][0]["provider"] == self.NAME, m
        assert m["attempts"][0]["outcome"] == "ambiguous", m
        agent_outcome(c, self.NAME, m["id"], "ambiguous")

    def test_429_throttled(self, env):
        c, fake = env
        before = c.provider(self.NAME)["throttled"]
        m = with_mode(fake, "429", 5, c, retry_after="3")
        assert m["status"] == "delivered", m
        assert m["attempts"][0]["provider"] == self.NAME, m
        assert m["attempts"][0]["outcome"] == "throttled", m
        # Free: the throttled try does not count against max_attempts.
        assert m["attempt_count"] == 1, m
        agent_outcome(c, self.NAME, m["id"], "throttled")
        # The registry paused the provider for it (GET /v1/providers).
        p = c.provider(self.NAME)
        assert p["throttled"] == before + 1, p

    def test_401_down_until_back(self, env):
        c, fake = env
        probes = getattr(fake, "probes", 0)
        fake.mode = "401"
        try:
            m = settled(c, c.submit(h.message(6)))
            assert_account(c, self.NAME, m, self.ACCOUNT_WORDS)
            if self.PROBE:
                # The probe goes out every probe_interval_s and, refused,
                # keeps the provider down.
                h.wait_for(lambda: fake.probes > probes, h.scaled(5),
                           "the stand-in to see a probe")
                assert c.provider(self.NAME)["state"] == "down"
            probes = getattr(fake, "probes", 0)
        finally:
            fake.mode = "ok"
        c.wait_state(self.NAME, "up", timeout=h.scaled(10))
        # Back by a probe that went out once the key was taken again.
        assert getattr(fake, "probes", 0) > probes or not self.PROBE
        m = settled(c, c.submit(h.message(10)))
        assert m["status"] == "delivered" and m["provider"] == self.NAME, m

    def _key_never_shown(self, env):
        """Last: after every case, the secrets are in no API answer, no
        check-config output and no file but their own."""
        c, fake = env
        assert fake.requests >= 6
        outputs = [("GET " + p, c.get(p).body) for p in
                   ("/v1/providers", "/v1/stats", "/v1/messages?limit=100")]
        r = subprocess.run([h.BIN, "check-config", "-c", c.config_path],
                           capture_output=True, timeout=h.scaled(20))
        assert r.returncode == 0, r
        outputs.append(("check-config", r.stdout + r.stderr))
        seen = 0
        for d, _, files in os.walk(c.dir):
            for name in files:
                path = os.path.join(d, name)
                if path in c.keyfiles.values() or not os.path.isfile(path):
                    continue
                with open(path, "rb") as f:
                    outputs.append((path, f.read()))
                seen += name.endswith((".log", ".ini"))
        assert seen >= 3  # the server's and two agents' logs, the .ini
        for where, out in outputs:
            for s in self.SECRETS:
                assert s.encode() not in out, where
