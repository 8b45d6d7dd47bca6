"""The ses connector against a local SES stand-in (tests/fakes/fake_ses.py)
that verifies every SigV4 signature with its own Python signer: a message
goes through and arrives byte for byte; each class of SES fault arrives as
the attempt's class; a suspended account or a bad key takes the provider
down, its probe (a signed GetAccount) is seen failing, and once the
stand-in accepts again the probe brings it back; temporary credentials
send their session token signed; addresses reach SES in 7-bit ASCII, a
non-ASCII domain as its A-labels, and a non-ASCII local part goes to
another provider; the secret key and the token never show in a log or an
answer."""

import email.parser
import email.policy
import os
import smtplib
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_ses  # noqa: E402

AKID = "AKIDSHIVNERITEST"
# Distinctive, so that a grep finds any leak of it.
SECRET = "SesSecret/" + os.urandom(12).hex() + "+LEAKCANARY"


@pytest.fixture(scope="module")
def ses(module_cluster_factory):
    fake = fake_ses.FakeSes(AKID, SECRET).start()
    c = module_cluster_factory(providers=("ses",), max_in_flight=4)
    key = os.path.join(c.dir, "ses.key")
    c.write_secret(key, SECRET)

    def section(name, spawn=None):
        return {"type": "ses", "spawn": "no", "max_in_flight": 4,
                "region": "us-east-1", "access_key_id": AKID,
                "secret_access_key_file": key, "base_url": fake.base_url,
                "request_timeout_ms": int(h.scaled(1500)),
                # An account fault downs the provider until the next
                # probe interval: keep the cases quick.
                "probe_interval_s": 1}
    c.provider_section = section
    c.write_config()
    c.start_server()
    c.start_agent("ses")
    yield c, fake
    fake.stop()


def test_fake_signer_matches_aws_case():
    """The stand-in's signer reproduces the SES case of AWS's suite, so a
    signature it accepts is one SES would accept."""
    import hashlib
    body = (b'{"FromEmailAddress": "from@example.com", "Destination": '
            b'{"ToAddresses": ["to@example.com"]}, "Content": {"Raw": '
            b'{"Data": "RnJvbTogYQ0KDQpoaQ=="}}, "EmailTags": '
            b'[{"Name": "t", "Value": "v"}]}')
    hd = [("Content-Type", "application/json"),
          ("Host", "email.us-east-1.amazonaws.com"),
          ("X-Amz-Date", "20150830T123600Z")]
    creq = fake_ses.canonical_request(
        "POST", "/v2/email/outbound-emails", hd,
        ["content-type", "host", "x-amz-date"], body)
    sts = "\n".join(["AWS4-HMAC-SHA256", "20150830T123600Z",
                     "20150830/us-east-1/ses/aws4_request",
                     hashlib.sha256(creq.encode()).hexdigest()])
    assert fake_ses.signature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                              "20150830", "us-east-1", "ses", sts) == \
        "9483baa7465a29e7a2906f28286d8ce97c85bcb3710e273cbf4169df4026829d"
    # GetAccount with a session token (the case of test_sigv4.c, computed
    # with botocore): the stand-in checks a token signed as AWS does.
    tok = ("AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZ"
           "TwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkP"
           "pKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7W"
           "Z0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7Z"
           "D0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx"
           "3iSIlTJabIQwj2ICCR/oLxBA==")
    hd = [("X-Amz-Security-Token", tok),
          ("Host", "email.us-east-1.amazonaws.com"),
          ("X-Amz-Date", "20150830T123600Z")]
    creq = fake_ses.canonical_request(
        "GET", "/v2/email/account", hd,
        ["host", "x-amz-date", "x-amz-security-token"], b"")
    assert hashlib.sha256(creq.encode()).hexdigest() == \
        "49b90a9c3df32273d0b4d222edd8f6da8c36f24001fecb651dd21a5008b13c7d"
    sts = "\n".join(["AWS4-HMAC-SHA256", "20150830T123600Z",
                     "20150830/us-east-1/ses/aws4_request",
                     hashlib.sha256(creq.encode()).hexdigest()])
    assert fake_ses.signature("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                              "20150830", "us-east-1", "ses", sts) == \
        "74350b273f14eb4d147e398e505f5b0b3382cd695f2fda59b62589beaa1e65f5"


def test_delivers_raw(ses):
    c, fake = ses
    fake.mode = "ok"
    n0 = len(fake.received)
    msg = h.message(1, to=["bob@example.net", "carol@example.org"],
                    subject="SES round trip", text="body line\n")
    mid = c.submit(msg)
    c.wait_delivered([mid])
    m = c.msg(mid)
    att = m["attempts"]
    assert att[-1]["outcome"] == "delivered", m
    assert not fake.errors, fake.errors
    got = fake.received[n0:]
    assert len(got) == 1, got
    assert got[0]["from"] == "ann@example.com", got[0]
    assert sorted(got[0]["to"]) == ["bob@example.net", "carol@example.org"]
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(
        got[0]["raw"])
    assert parsed["Subject"] == "SES round trip"
    assert "ann@example.com" in parsed["From"]
    assert "bob@example.net" in parsed["To"]
    assert parsed.get_body(("plain",)).get_content().replace(
        "\r\n", "\n") == "body line\n"


FAULTS = [
    ("throttle429", "throttled", "TooManyRequestsException"),
    ("throttle400", "throttled", "ThrottlingException"),
    ("quota", "account", "ThrottlingException"),
    ("noid", "ambiguous", None),
    ("suspended", "account", "AccountSuspendedException"),
    ("500", "transient", "InternalFailure"),
    ("hang", "ambiguous", None),
]


@pytest.mark.parametrize("mode,cls,etype", FAULTS)
def test_fault_classes(ses, mode, cls, etype):
    c, fake = ses
    fake.mode = mode
    mid = c.submit(h.message(2, subject="fault " + mode))

    def failed_attempt():
        for a in c.msg(mid)["attempts"]:
            if a["outcome"] != "delivered" and "class=" + cls in \
                    (a.get("detail") or ""):
                return a
        return None
    a = h.wait_for(failed_attempt, 10, "an attempt of class " + cls)
    assert a["outcome"] == cls, a
    if etype is not None:
        assert etype in a["detail"], a
    fake.mode = "ok"
    c.wait_delivered([mid])


def test_reject_is_permanent(ses):
    c, fake = ses
    fake.mode = "reject"
    mid = c.submit(h.message(3, subject="rejected"))

    def failed():
        m = c.msg(mid)
        return m if m["status"] == "failed" else None
    m = h.wait_for(failed, 10, "the rejected message to fail")
    fake.mode = "ok"
    att = m["attempts"]
    assert len(att) == 1 and att[0]["outcome"] == "permanent", m
    assert "MessageRejected" in att[0]["detail"], m


def account_attempt(c, mid):
    def cond():
        for a in c.msg(mid)["attempts"]:
            if "class=account" in (a.get("detail") or ""):
                return a
        return None
    return h.wait_for(cond, 10, "an account attempt of " + mid)


def probes_fail(c, fake, n, words):
    """Waits for n more probes at the stand-in, each failing (the
    provider still down), and for the agent to have logged why."""
    p0 = fake.probes
    h.wait_for(lambda: fake.probes >= p0 + n, 10 + 2 * n,
               "%d probes at the stand-in" % n)
    assert c.provider("ses")["state"] == "down", c.provider("ses")

    def logged():
        with open(c.agents["ses"].log_path, errors="replace") as f:
            return any("probe_failed" in ln and words in ln for ln in f)
    h.wait_for(logged, 5, "probe_failed with %r in the agent's log" % words)


def test_bad_signature_is_account(ses, tmp_path):
    """An agent with the wrong secret: SES's 403 is the account's fault,
    and the stand-in saw a signature that did not match; the provider
    stays down while the probe's signature fails too, and comes back by
    the probe once the stand-in takes the key again."""
    c, fake = ses
    fake.mode = "ok"
    n0 = len(fake.errors)
    fake.secret, good = "wrong" + SECRET, fake.secret
    try:
        mid = c.submit(h.message(4, subject="bad sig"))
        a = account_attempt(c, mid)
        assert "SignatureDoesNotMatch" in a["detail"], a
        c.wait_state("ses", "down")
        probes_fail(c, fake, 1, "SignatureDoesNotMatch")
        assert any(e[1] == "SignatureDoesNotMatch"
                   for e in fake.errors[n0:]), fake.errors
    finally:
        fake.secret = good
    p1 = fake.probes
    c.wait_state("ses", "up")
    assert fake.probes > p1, "up again without a probe"
    c.wait_delivered([mid])


def test_suspended_stays_down_until_probe_passes(ses):
    """A suspended account: the send is the account's fault, the provider
    goes down with SES's reason, and GetAccount (SendingEnabled false)
    keeps it down; once the account may send again, the probe brings it
    back and the message is delivered."""
    c, fake = ses
    c.wait_state("ses", "up")
    fake.mode = "suspended"
    try:
        mid = c.submit(h.message(5, subject="suspended"))
        a = account_attempt(c, mid)
        assert "AccountSuspendedException" in a["detail"], a
        p = c.wait_state("ses", "down")
        assert "AccountSuspendedException" in (p.get("reason") or ""), p
        probes_fail(c, fake, 1, "SendingEnabled is not true "
                    "(EnforcementStatus SHUTDOWN)")
    finally:
        fake.mode = "ok"
    p1 = fake.probes
    c.wait_state("ses", "up")
    assert fake.probes > p1, "up again without a probe"
    c.wait_delivered([mid])


def test_session_token(make_cluster):
    """Temporary credentials: the session token goes out signed (the
    stand-in requires it among the signed headers) and the message is
    delivered; a token the stand-in no longer takes is the account's
    fault, and the probe, signed with the token, brings the provider back
    once it is taken again.  Neither key nor token reaches a log."""
    token = "IQoJb3JpZ2luX2VjE/" + os.urandom(16).hex() + "+TOKENCANARY=="
    fake = fake_ses.FakeSes(AKID, SECRET, token=token).start()
    try:
        c = make_cluster(providers=("ses",))
        key = os.path.join(c.dir, "ses.key")
        tok = os.path.join(c.dir, "ses.token")
        c.write_secret(key, SECRET)
        c.write_secret(tok, token)
        c.provider_section = lambda name, spawn=None: {
            "type": "ses", "spawn": "no", "max_in_flight": 4,
            "region": "us-east-1", "access_key_id": AKID,
            "secret_access_key_file": key, "session_token_file": tok,
            "base_url": fake.base_url, "probe_interval_s": 1,
            "request_timeout_ms": int(h.scaled(1500))}
        c.write_config()
        c.start_server()
        c.start_agent("ses")
        mid = c.submit(h.message(6, subject="with a token"))
        c.wait_delivered([mid])
        assert len(fake.received) == 1 and not fake.errors, fake.errors
        fake.token = "IQoJb3JpZ2luX2VjEOTHER"
        try:
            mid2 = c.submit(h.message(7, subject="stale token"))
            a = account_attempt(c, mid2)
            assert "UnrecognizedClientException" in a["detail"], a
            c.wait_state("ses", "down")
        finally:
            fake.token = token
        p1 = fake.probes
        c.wait_state("ses", "up")
        assert fake.probes > p1
        c.wait_delivered([mid2])
        for p in c.procs:
            with open(p.log_path, "rb") as f:
                data = f.read()
            assert token.encode() not in data, p.log_path
            assert SECRET.encode() not in data, p.log_path
        for path in ("/v1/providers", "/v1/messages?limit=100"):
            assert token.encode() not in c.get(path).body, path
    finally:
        fake.stop()


def ses_then_maildir(make_cluster, fake, extra=None):
    """SES preferred (priority 1), the maildir provider m behind it."""
    c = make_cluster(providers=("ses", "m"), server_extra=extra)
    key = os.path.join(c.dir, "ses.key")
    c.write_secret(key, SECRET)
    c.server_extra.update(scheduler="priority")
    c.provider_extra.update(priority=2)
    c.sections["ses"] = {
        "type": "ses", "spawn": "no", "max_in_flight": 4,
        "region": "us-east-1", "access_key_id": AKID,
        "secret_access_key_file": key, "base_url": fake.base_url,
        "priority": 1, "request_timeout_ms": int(h.scaled(1500))}
    c.write_config()
    c.start_server()
    c.start_agent("ses")
    c.start_agent("m")
    c.wait_state("ses", "up")
    c.wait_state("m", "up")
    return c


def test_non_ascii_address_goes_elsewhere(make_cluster):
    """SES takes 7-bit ASCII addresses only (no SMTPUTF8): the agent
    answers needs_smtputf8 for a non-ASCII local part, which has no ASCII
    form, without a request; the try is free, and the maildir provider
    behind it delivers; ASCII mail still goes to SES.  Before 2026-12-01
    SES got the request and its refusal failed the message for good."""
    fake = fake_ses.FakeSes(AKID, SECRET).start()
    try:
        c = ses_then_maildir(make_cluster, fake)
        mid = c.submit(h.message(8, to=["zo\u00eb@example.net"]))
        c.wait_delivered([mid])
        m = c.msg(mid)
        got = [(a["provider"], a["outcome"]) for a in m["attempts"]]
        assert got == [("ses", "needs_smtputf8"), ("m", "delivered")], m
        assert "7-bit ASCII" in m["attempts"][0]["detail"], m
        assert m["attempt_count"] == 1, m
        assert not fake.received and not fake.errors
        mid2 = c.submit(h.message(9))
        c.wait_delivered([mid2])
        assert [a["provider"] for a in c.msg(mid2)["attempts"]] == ["ses"]
        assert len(fake.received) == 1
    finally:
        fake.stop()


def test_idn_domain_as_alabels(make_cluster):
    """A non-ASCII domain (in by SMTP with SMTPUTF8) goes to SES as its
    A-labels, which SES asks for, and SES delivers it: the stand-in, like
    SES, refuses a non-ASCII domain.  The message is the client's.  Before
    2026-12-01 the agent answered needs_smtputf8 and the maildir provider
    took it."""
    fake = fake_ses.FakeSes(AKID, SECRET).start()
    try:
        port = h.free_port()
        c = ses_then_maildir(make_cluster, fake,
                             {"smtp_listen": "127.0.0.1:%d" % port})
        rcpt = "info@b\u00fccher.example"
        raw = ("From: ann@example.com\r\nTo: %s\r\nSubject: idn\r\n\r\n"
               "hello\r\n" % rcpt).encode()
        with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10)) as s:
            s.ehlo("client.example")
            s.mail("ann@example.com", ["SMTPUTF8"])
            s.rcpt(rcpt)
            code, resp = s.data(raw)
        assert code == 250, resp
        mid = resp.decode().rsplit(" ", 1)[1]
        c.wait_delivered([mid])
        m = c.msg(mid)
        got = [(a["provider"], a["outcome"]) for a in m["attempts"]]
        assert got == [("ses", "delivered")], m
        assert len(fake.received) == 1 and not fake.errors, fake.errors
        assert fake.received[0]["to"] == ["info@xn--bcher-kva.example"]
        assert fake.received[0]["raw"].endswith(raw)
    finally:
        fake.stop()


def test_secret_never_shown(ses):
    c, fake = ses
    for path in ("/v1/providers", "/v1/stats", "/v1/messages?limit=100"):
        r = c.get(path)
        assert SECRET.encode() not in r.body, path
    for p in c.procs:
        with open(p.log_path, "rb") as f:
            assert SECRET.encode() not in f.read(), p.log_path
    for name in os.listdir(c.dir):
        if name.endswith(".log") or name.endswith(".ini"):
            with open(os.path.join(c.dir, name), "rb") as f:
                assert SECRET.encode() not in f.read(), name
