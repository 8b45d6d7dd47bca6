"""The smtp connector against a real smarthost: Debian's Postfix, started
by the test on 127.0.0.1 (tests/fakes/postfix_fake.py) with STARTTLS
required, SMTP AUTH through Cyrus SASL, one recipient refused for good by
an access table, and every accepted message held in its queue so nothing
leaves.  What Postfix got is read from its own queue (postqueue -j,
postcat) and compared with what was submitted to Shivneri: recipients,
Subject, body; the id Shivneri records is Postfix's queue id.

test_55 covers the connector's every class against aiosmtpd; this file
checks that the same answers come out of the server the README tells
operators to relay through.
"""

import glob
import os
import smtplib
import socket
import ssl
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import postfix_fake  # noqa: E402
import smtp_fake  # noqa: E402

USER = "relay"
PASSWORD = "Pf-63-heron-Password-7c2a"
REFUSED = "refused@example.net"
REFUSAL = "550 5.1.1 <%s>: no such user here" % REFUSED


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return smtp_fake.make_certs(str(tmp_path_factory.mktemp("certs")))


def banner_up(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.settimeout(h.scaled(5))
            return s.recv(512).startswith(b"220")
    except OSError:
        return False


@pytest.fixture(scope="module")
def smarthost(certs):
    missing = postfix_fake.missing_tools()
    if missing:
        pytest.skip("not installed: %s (scripts/install-deps.sh)" %
                    ", ".join(missing))
    if os.geteuid() != 0:
        pytest.skip("a private Postfix needs root (its daemons drop to the "
                    "postfix user)")
    ca, cert, key = certs
    pf = postfix_fake.PostfixSmarthost(h.free_port(), cert, key, USER,
                                       PASSWORD, {REFUSED: REFUSAL},
                                       timeout=h.scaled(20))
    try:
        pf.start()
        h.wait_for(lambda: banner_up(pf.port), 10,
                   "Postfix's banner on %d" % pf.port)
        yield pf
    finally:
        print("----- postfix maillog -----")
        print(pf.log_tail().replace(PASSWORD, "<redacted>"))
        pf.stop()


def test_smarthost_is_as_configured(smarthost, certs):
    """The premise of the others: AUTH only after STARTTLS, PLAIN offered,
    the account works with its password and not without."""
    with smtplib.SMTP("127.0.0.1", smarthost.port,
                      timeout=h.scaled(10)) as s:
        s.ehlo("check.test")
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=ssl.create_default_context(cafile=certs[0]))
        s.ehlo("check.test")
        assert "PLAIN" in s.esmtp_features["auth"].upper().split()
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(USER, PASSWORD + "-wrong")
        assert e.value.smtp_code == 535
        s.login(USER, PASSWORD)


def cluster(make_cluster, smarthost, ca, tmp_path, password=PASSWORD,
            fallback=False):
    """A cluster whose provider "s" is the smtp connector aimed at the
    smarthost with STARTTLS and AUTH; with fallback, a maildir provider
    "b" that the priority scheduler tries after it."""
    names = ("s", "b") if fallback else ("s",)
    c = make_cluster(providers=names,
                     server_extra={"scheduler": "priority"})
    pw = str(tmp_path / ("smtp-%d.pw" % len(password)))
    h.Cluster.write_secret(pw, password)
    sec = {"type": "smtp", "spawn": "no", "max_in_flight": 4,
           "priority": 1, "host": "127.0.0.1", "port": smarthost.port,
           "tls": "starttls", "username": USER, "password_file": pw,
           "tls_ca_file": ca, "helo": "relay.test"}
    provs = {"s": sec}
    if fallback:
        provs["b"] = dict(c.provider_section("b"), priority=2)
    with open(c.config_path, "w") as f:
        f.write(c.render(c.server_section(), provs))
    c.start_server()
    for n in names:
        c.start_agent(n)
    c.wait_state("s", "up")
    return c


def held(smarthost, queue_id):
    """The message Postfix holds under queue_id, with its content."""
    q = smarthost.queued().get(queue_id)
    if q is None:
        return None
    q["content"] = smarthost.content(queue_id)
    return q


def assert_same_message(q, submitted, rcpts):
    assert q["queue_name"] == "hold", q
    assert q["sender"] == "ann@example.com", q
    assert sorted(q["recipients"]) == sorted(rcpts), q
    head, _, body = q["content"].partition("\n\n")
    assert "\nSubject: %s\n" % submitted["subject"] in "\n" + head + "\n", q
    assert body.strip() == submitted["text"].strip(), q


def wait_attempt(c, mid, outcome, timeout=10):
    """The message once an attempt with outcome is recorded for it."""
    def cond():
        m = c.msg(mid)
        if any(a["outcome"] == outcome for a in m["attempts"]):
            return m
        return None
    return h.wait_for(cond, timeout, "an attempt of %s %s" % (mid, outcome))


def test_two_recipients_delivered_and_held(make_cluster, smarthost, certs,
                                          tmp_path):
    c = cluster(make_cluster, smarthost, certs[0], tmp_path)
    rcpts = ["bob@example.net", "cy@example.org"]
    sub = h.message(1, to=rcpts, subject="pf63 two recipients")
    mid = c.submit(sub)
    c.wait_delivered([mid])
    m = c.msg(mid)
    att = m["attempts"][-1]
    assert att["outcome"] == "delivered", m
    qid = m["provider_message_id"]
    assert qid and qid.isalnum(), m
    q = h.wait_for(lambda: held(smarthost, qid), 10,
                   "%s in Postfix's queue" % qid)
    assert_same_message(q, sub, rcpts)
    log = smarthost.log_text()
    assert "%s: client=" % qid in log and "sasl_method=PLAIN" in log, log
    assert "TLS connection established" in log, log


def test_one_recipient_refused(make_cluster, smarthost, certs, tmp_path):
    c = cluster(make_cluster, smarthost, certs[0], tmp_path)
    sub = h.message(2, to=["dee@example.net", REFUSED],
                    subject="pf63 one refused")
    mid = c.submit(sub)
    c.wait_delivered([mid])
    m = c.msg(mid)
    att = m["attempts"][-1]
    assert att["outcome"] == "delivered", m
    # The access table's action is the reply Postfix gives at RCPT.
    assert "refused 1 of 2" in att["detail"], att
    assert REFUSED + " 550" in att["detail"], att
    assert "dee@" not in att["detail"], att
    qid = m["provider_message_id"]
    assert qid and qid.isalnum(), m
    q = h.wait_for(lambda: held(smarthost, qid), 10,
                   "%s in Postfix's queue" % qid)
    assert_same_message(q, sub, ["dee@example.net"])


def test_only_the_refused_recipient_is_permanent(make_cluster, smarthost,
                                                 certs, tmp_path):
    c = cluster(make_cluster, smarthost, certs[0], tmp_path, fallback=True)
    before = set(smarthost.queued())
    mid = c.submit(h.message(3, to=[REFUSED], subject="pf63 all refused"))
    m = h.wait_for(lambda: (lambda m: m if m["status"] == "failed" else None)
                   (c.msg(mid)), 10, "%s to fail" % mid)
    assert [a["outcome"] for a in m["attempts"]] == ["permanent"], m
    assert m["attempts"][0]["provider"] == "s", m
    assert REFUSED + " 550" in m["attempts"][0]["detail"], m
    assert m["provider"] != "b", m
    assert not glob.glob(os.path.join(c.maildir("b"), "new", "*"))
    assert set(smarthost.queued()) == before


def test_wrong_password_is_account_and_moves_on(make_cluster, smarthost,
                                                certs, tmp_path):
    c = cluster(make_cluster, smarthost, certs[0], tmp_path,
                password=PASSWORD + "-old", fallback=True)
    before = set(smarthost.queued())
    mid = c.submit(h.message(4, subject="pf63 wrong password"))
    m = wait_attempt(c, mid, "account")
    att = [a for a in m["attempts"] if a["outcome"] == "account"][0]
    assert att["provider"] == "s", m
    assert "smtp AUTH refused: 535 " in att["detail"], att
    p = c.wait_state("s", "down")
    assert (p["reason"] or "").startswith("account: "), p
    c.wait_delivered([mid])
    assert c.msg(mid)["provider"] == "b"
    assert set(smarthost.queued()) == before
    assert "authentication failed" in smarthost.log_text()
    for path in glob.glob(os.path.join(c.dir, "*.log")):
        with open(path, "rb") as f:
            assert PASSWORD.encode() not in f.read(), path
