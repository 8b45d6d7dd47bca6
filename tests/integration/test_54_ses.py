"""The ses connector against a local SES stand-in (tests/fakes/fake_ses.py)
that verifies every SigV4 signature with its own Python signer: a message
goes through and arrives byte for byte; each class of SES fault arrives as
the attempt's class; the secret key never shows in a log or an answer."""

import email.parser
import email.policy
import os
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


def test_bad_signature_is_account(ses, tmp_path):
    """An agent with the wrong secret: SES's 403 is the account's fault,
    and the stand-in saw a signature that did not match."""
    c, fake = ses
    fake.mode = "ok"
    n0 = len(fake.errors)
    fake.secret, good = "wrong" + SECRET, fake.secret
    try:
        mid = c.submit(h.message(4, subject="bad sig"))

        def failed_attempt():
            for a in c.msg(mid)["attempts"]:
                if "class=account" in (a.get("detail") or ""):
                    return a
            return None
        a = h.wait_for(failed_attempt, 10, "an account attempt")
        assert "SignatureDoesNotMatch" in a["detail"], a
        assert any(e[1] == "SignatureDoesNotMatch"
                   for e in fake.errors[n0:]), fake.errors
    finally:
        fake.secret = good
    c.wait_delivered([mid])


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
