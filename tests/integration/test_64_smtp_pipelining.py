"""The smtp connector's transaction against the aiosmtpd stand-in
(tests/fakes/smtp_fake.py): pipelined (RFC 2920) when the smarthost's EHLO
answer offers PIPELINING and lock-step when not, with the outcomes of
lock-step (a refused recipient among taken ones, every one refused with no
body sent, a broken server's 354 answered by a dot alone, a reused session
dropped at MAIL replaced); idle sessions closed by their timer; non-ASCII
addresses with and without SMTPUTF8, and routed to a smarthost that
offers it; non-ASCII domains as their A-labels without SMTPUTF8; 8-bit messages said BODY=8BITMIME, or made 7-bit for a
smarthost without 8BITMIME."""

import datetime
import email
import email.policy
import smtplib
import subprocess
import time

import pytest

import shivneri_harness as h
import test_55_smtp as t55

# The stand-ins' fixture (tests/fakes/smtp_fake.py), shared with test_55.
fakes = t55.fakes


def with_intake(make_cluster, fake):
    """The server with its SMTP intake, and s, the agent of fake; the
    cluster and the intake's port."""
    port = h.free_port()
    c = make_cluster(providers=("s",),
                     server_extra={"smtp_listen": "127.0.0.1:%d" % port})
    c.smtp_provider("s", fake.port)
    c.start_server()
    c.start_agent("s")
    return c, port


def started(make_cluster, fake, extra=None):
    c = t55.smtp_cluster(make_cluster, fake, extra)
    c.start_server()
    c.start_agent("s")
    return c


def transcript(fake, n=1):
    """The client's bytes of the first n closed connections."""
    h.wait_for(lambda: len(fake.transcripts) >= n, h.scaled(5),
               "%d connections closed at the stand-in" % n)
    return fake.transcripts[:n]


@pytest.mark.parametrize("pipelining", [True, False])
def test_pipelined_only_when_offered(make_cluster, fakes, pipelining):
    # With PIPELINING offered, MAIL, every RCPT and DATA arrive before MAIL
    # is answered; without it, nothing arrives before its turn.  Either
    # way a refused recipient does not stop the others.
    fake = fakes(pipelining=pipelining)
    fake.refuse_rcpt["nobody@example.net"] = "550 5.1.1 user unknown"
    c = started(make_cluster, fake)
    mid = c.submit(h.message(1, to=["bob@example.net", "nobody@example.net",
                                    "cy@example.org"]))
    c.wait_delivered([mid])
    got = t55.wait_received(fake, 1)[0]
    assert sorted(got["to"]) == ["bob@example.net", "cy@example.org"]
    assert fake.arrivals == ["pipelined" if pipelining else "lockstep"]
    att = c.msg(mid)["attempts"][-1]
    assert att["outcome"] == "delivered", att
    assert "refused 1 of 3: nobody@example.net 550" in att["detail"], att
    # The next message on the same session goes the same way.
    mid2 = c.submit(h.message(2))
    c.wait_delivered([mid2])
    assert fake.connections == 1
    assert fake.arrivals[1] == fake.arrivals[0], fake.arrivals


def test_pipelined_group_longer_than_one_write(make_cluster, fakes):
    # 150 recipients of ~130 bytes: the group (about 21 KB) takes more
    # than the connector's 16 KB buffer, so it goes in parts while the
    # first replies come back; each reply still finds its recipient.
    fake = fakes(pipelining=True)
    rcpts = ["r%03d.%s@%s.example.net" % (i, "x" * 50, "d" * 60)
             for i in range(150)]
    for i in (0, 77, 149):
        fake.refuse_rcpt[rcpts[i]] = "550 5.1.1 user unknown"
    c = started(make_cluster, fake)
    mid = c.submit(h.message(9, to=rcpts[:1], bcc=rcpts[1:]))
    c.wait_delivered([mid])
    got = t55.wait_received(fake, 1)[0]
    want = [r for i, r in enumerate(rcpts) if i not in (0, 77, 149)]
    assert sorted(got["to"]) == want
    assert fake.arrivals[0] in ("pipelined", "partial"), fake.arrivals
    att = c.msg(mid)["attempts"][-1]
    assert "refused 3 of 150" in att["detail"], att
    for i in (0, 77, 149):  # an address is cut short in the detail
        assert "r%03d.xxxx" % i in att["detail"], att


def test_pipelined_every_recipient_refused(make_cluster, fakes):
    # DATA went out with the group: its refusal (503 here) is read, no
    # body follows, and the outcome is lock-step's for all refused.
    fake = fakes(pipelining=True)
    fake.refuse_rcpt["nobody@example.net"] = "550 5.1.1 user unknown"
    fake.refuse_rcpt["gone@example.net"] = "551 5.1.6 moved"
    c = started(make_cluster, fake)
    mid = c.submit(h.message(3, to=["nobody@example.net",
                                    "gone@example.net"]))
    m = t55.wait_outcome(c, mid, "permanent")
    assert "every recipient refused" in m["attempts"][0]["detail"], m
    assert fake.arrivals == ["pipelined"]
    assert not fake.messages()
    sent = transcript(fake)[0]
    assert sent.endswith(b"DATA\r\n"), sent
    assert b"Subject:" not in sent

    # A broken server answers that DATA with 354 all the same: RFC 2920
    # 3.1, the client sends a dot alone, so an empty message at most
    # and never the body; the outcome stays the recipients'.
    fake.broken_data = True
    mid2 = c.submit(h.message(4, to=["nobody@example.net"]))
    m2 = t55.wait_outcome(c, mid2, "permanent")
    assert "every recipient refused: nobody@example.net 550" in \
        m2["attempts"][0]["detail"], m2
    got = t55.wait_received(fake, 1)
    assert got[0]["data"] == b"", got
    sent = transcript(fake, 2)[1]
    assert sent.endswith(b"DATA\r\n.\r\n"), sent
    assert b"Subject:" not in sent


@pytest.mark.parametrize("drop", ["421", "silent"])
def test_reused_pipelined_session_dropped_at_mail(make_cluster, fakes,
                                                  drop):
    # The smarthost closes a reused session as the next group arrives,
    # with a 421 or with no reply: the message goes once more on a fresh
    # session, delivered at its first attempt.
    fake = fakes(pipelining=True)
    fake.drop_reused = drop
    c = started(make_cluster, fake)
    ids = []
    for i in range(3):
        ids.append(c.submit(h.message(30 + i)))
        c.wait_delivered(ids)
    assert fake.dropped >= 1, "no reused connection was dropped"
    t55.assert_once_each(c, fake, ids)
    assert set(fake.arrivals) == {"pipelined"}, fake.arrivals


def test_idle_session_closed_on_time(make_cluster, fakes):
    # idle_timeout_ms 300: the stand-in (whose own idle timeout is
    # 300 s) sees QUIT and the close 300 ms after the message, not at the
    # next one.
    fake = fakes()
    c = started(make_cluster, fake, {"idle_timeout_ms": 300})
    mid = c.submit(h.message(5))
    c.wait_delivered([mid])
    sent = transcript(fake)[0]
    assert sent.endswith(b"QUIT\r\n"), sent
    idle = fake.closed_at - fake.data_at
    assert 0.29 <= idle <= h.scaled(3), idle
    assert fake.connections == 1


@pytest.mark.parametrize("offered", [True, False])
def test_non_ascii_address(make_cluster, fakes, offered):
    # Offered, MAIL says SMTPUTF8 and the address arrives as UTF-8; not
    # offered, the message fails for good before MAIL, and the session
    # carries the next message.
    fake = fakes(smtputf8=offered)
    c = started(make_cluster, fake)
    wide = "zo\u00eb@example.net"
    mid = c.submit(h.message(6, to=[wide, "bob@example.net"]))
    if offered:
        c.wait_delivered([mid])
        got = t55.wait_received(fake, 1)[0]
        assert got["smtputf8"] is True, got
        assert sorted(got["to"]) == ["bob@example.net", wide], got
        return
    # Refused before MAIL, and with no other provider to take it, failed.
    m = t55.wait_outcome(c, mid, "needs_smtputf8")
    assert "SMTPUTF8" in m["attempts"][0]["detail"], m
    m = h.wait_for(lambda: (lambda x: x if x["status"] == "failed"
                            else None)(c.msg(mid)), h.scaled(5),
                   "the message failed")
    assert "SMTPUTF8" in m["error"], m
    assert fake.mails == 0 and not fake.messages()
    mid2 = c.submit(h.message(7))
    c.wait_delivered([mid2])
    assert fake.connections == 1
    assert t55.wait_received(fake, 1)[0]["smtputf8"] is False


@pytest.mark.parametrize("offered", [True, False])
def test_idn_domain(make_cluster, fakes, offered):
    # In by SMTP with SMTPUTF8, only domains non-ASCII: where the smarthost
    # offers SMTPUTF8, MAIL says it and they arrive as UTF-8; where not,
    # they go as their A-labels (the same names, RFC 5890) and the message
    # is delivered, its bytes as the client wrote them.  Until 2026-12-01
    # it was refused as needing SMTPUTF8 and failed.
    fake = fakes(smtputf8=offered)
    c, port = with_intake(make_cluster, fake)
    sender, rcpt = "ann@m\u00fcnchen.example", "info@b\u00fccher.example"
    raw = ("From: %s\r\nTo: %s\r\nSubject: idn\r\n\r\nhello\r\n"
           % (sender, rcpt)).encode()
    with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10)) as s:
        s.ehlo("client.example")
        s.mail(sender, ["SMTPUTF8"])
        s.rcpt(rcpt)
        s.rcpt("bob@example.net")
        code, resp = s.data(raw)
    assert code == 250, resp
    mid = resp.decode().rsplit(" ", 1)[1]
    c.wait_delivered([mid])
    got = t55.wait_received(fake, 1)[0]
    m = c.msg(mid)
    assert [a["outcome"] for a in m["attempts"]] == ["delivered"], m
    assert got["data"].endswith(raw), got
    if offered:
        assert got["smtputf8"] is True, got
        assert got["from"] == sender, got
        assert sorted(got["to"]) == ["bob@example.net", rcpt], got
        return
    assert got["smtputf8"] is False, got
    assert got["from"] == "ann@xn--mnchen-3ya.example", got
    assert sorted(got["to"]) == ["bob@example.net",
                                 "info@xn--bcher-kva.example"], got


def test_non_ascii_address_goes_where_smtputf8_is(make_cluster, fakes):
    # Two smarthosts, the preferred one without SMTPUTF8: its refusal
    # (before MAIL) is free, the message goes to the other, and the next
    # such message goes straight there while ASCII mail still goes to the
    # preferred one.  GET /v1/providers and /metrics say until when.
    # Until 2026-12-01 the refusal failed the message for good.
    plain, wide = fakes(smtputf8=False), fakes(smtputf8=True)
    c = make_cluster(providers=("s", "u"))
    c.server_extra.update(scheduler="priority")
    c.smtp_provider("s", plain.port, priority=1)
    c.smtp_provider("u", wide.port, priority=2)
    c.start_server()
    c.start_agent("s")
    c.start_agent("u")
    c.wait_state("s", "up")
    c.wait_state("u", "up")
    assert c.provider("s")["smtputf8_refused_until"] is None

    addr = "zo\u00eb@example.net"
    mid = c.submit(h.message(8, to=[addr]))
    c.wait_delivered([mid])
    m = c.msg(mid)
    got = [(a["provider"], a["outcome"]) for a in m["attempts"]]
    assert got == [("s", "needs_smtputf8"), ("u", "delivered")], m
    assert t55.wait_received(wide, 1)[0]["smtputf8"] is True
    assert plain.mails == 0 and not plain.messages()

    until = c.provider("s")["smtputf8_refused_until"]
    assert until is not None and c.provider("u")["smtputf8_refused_until"] \
        is None
    until = datetime.datetime.strptime(until, "%Y-%m-%dT%H:%M:%S.%fZ")
    until = until.replace(tzinfo=datetime.timezone.utc).timestamp()
    # An hour from the refusal.
    assert 3500 < until - time.time() <= 3600, until
    name = "shivneri_provider_smtputf8_refused_until_timestamp_seconds"
    lines = c.get("/metrics").body.decode().split("\n")
    assert name + '{provider="u"} 0' in lines, lines
    got = [ln for ln in lines if ln.startswith(name + '{provider="s"} ')]
    assert len(got) == 1 and 0 <= float(got[0].split()[1]) - until < 1, got

    out = subprocess.run([h.BIN, "providers", "--url",
                          "http://127.0.0.1:%d" % c.http_port],
                         capture_output=True, text=True,
                         timeout=h.scaled(30))
    assert out.returncode == 0, out
    head = out.stdout.splitlines()[0]
    at = head.index(" NO_SMTPUTF8_UNTIL ") + 1
    rows = {ln.split()[0]: ln[at:].split()[0]
            for ln in out.stdout.splitlines()[1:]}
    assert rows == {"s": c.provider("s")["smtputf8_refused_until"],
                    "u": "-"}, out.stdout

    mid2 = c.submit(h.message(9, to=[addr]))
    mid3 = c.submit(h.message(10))
    c.wait_delivered([mid2, mid3])
    assert [a["provider"] for a in c.msg(mid2)["attempts"]] == ["u"]
    assert [a["provider"] for a in c.msg(mid3)["attempts"]] == ["s"]


EIGHT_BIT = ("Date: Tue, 01 Dec 2026 10:00:00 +0000\r\n"
             "Message-ID: <eight-%d@example.com>\r\n"
             "From: ann@example.com\r\nTo: bob@example.net\r\n"
             "Subject: 8bit\r\nMIME-Version: 1.0\r\n"
             "Content-Type: text/plain; charset=utf-8\r\n"
             "Content-Transfer-Encoding: 8bit\r\n\r\n"
             "caf\u00e9 au lait\r\n.dot first\r\n")
EIGHT_BIT_TEXT = "caf\u00e9 au lait\r\n.dot first\r\n".encode()


def smtp_in(port, raw, body8=True):
    """raw through our SMTP intake; the id of its 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10)) as s:
        s.ehlo("client.example")
        s.mail("ann@example.com", ["BODY=8BITMIME"] if body8 else [])
        s.rcpt("bob@example.net")
        code, resp = s.data(raw)
    assert code == 250, resp
    return resp.decode().rsplit(" ", 1)[1]


@pytest.mark.parametrize("offered", [True, False])
def test_8bit_message(make_cluster, fakes, offered):
    # In by SMTP with BODY=8BITMIME, out to the smarthost: where it offers
    # 8BITMIME, MAIL says BODY=8BITMIME and the client's bytes go as they
    # are; where it does not, the message goes 7-bit (RFC 6152 section 3),
    # its text the same once decoded, its headers as written.  An ASCII
    # message never says BODY=.  Until 2026-12-01 8-bit bytes went to
    # either without a word.
    fake = fakes(eightbitmime=offered)
    c, port = with_intake(make_cluster, fake)
    raw = (EIGHT_BIT % 1).encode()
    mid = smtp_in(port, raw)
    c.wait_delivered([mid])
    got = t55.wait_received(fake, 1)[0]
    opts = [o.upper() for o in got["mail_options"]]
    if offered:
        assert "BODY=8BITMIME" in opts, got
        assert got["data"].endswith(raw), got
    else:
        assert not [o for o in opts if o.startswith("BODY=")], got
        assert max(got["data"]) < 0x80, got
        msg = email.message_from_bytes(got["data"],
                                       policy=email.policy.compat32)
        assert msg["Content-Transfer-Encoding"] in ("quoted-printable",
                                                    "base64"), got
        assert msg.get_payload(decode=True) == EIGHT_BIT_TEXT, got
        assert b"Message-ID: <eight-1@example.com>\r\n" in got["data"]
        assert b"\n" not in got["data"].replace(b"\r\n", b"")
    mid2 = smtp_in(port, t70_body(2), body8=False)
    c.wait_delivered([mid2])
    got = t55.wait_received(fake, 2)[1]
    assert not [o for o in got["mail_options"]
                if o.upper().startswith("BODY=")], got


def t70_body(n):
    return (b"From: Ann <ann@example.com>\r\nTo: bob@example.net\r\n"
            b"Subject: smtp %d\r\n\r\nhello %d\r\n" % (n, n))
