"""GET /metrics (issue 10): every line parses as Prometheus text exposition
under a strict parser written here, and the counters move by exactly what
was sent as mail flows over HTTP, SMTP and the SendGrid and Mailgun
drop-ins (a duplicate not counted), a failing provider's attempts show as
transient (and as failed attempts, not messages, in GET /v1/providers),
the state gauges follow a provider's state, and the oldest queued
message's age grows while nothing is sent and falls to 0 once it is."""

import base64
import json
import math
import os
import re
import smtplib
import sys

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import smtp_fake  # noqa: E402

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
STATES = ("up", "down", "paused", "disabled")


def _labels(text, line):
    """{name: value} of a label set's inside; asserts on bad syntax."""
    out = {}
    pos = 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        assert m, "bad label set in %r" % line
        assert m.group(1) not in out, "label twice in %r" % line
        out[m.group(1)] = re.sub(r"\\(.)", lambda e: "\n" if e.group(1) ==
                                 "n" else e.group(1), m.group(2))
        pos = m.end()
        if pos < len(text):
            assert text[pos] == ",", "bad label separator in %r" % line
            pos += 1
    return out


def _value(s, line):
    if s in ("+Inf", "-Inf", "NaN"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.match(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z", s), line
    return float(s)


def _family(name, types):
    """The family a sample belongs to (a histogram's _bucket, ...)."""
    for suf in ("_bucket", "_sum", "_count"):
        if name.endswith(suf) and types.get(name[:-len(suf)]) == "histogram":
            return name[:-len(suf)]
    return name


def parse(body):
    """Strict text exposition 0.0.4: returns (types, samples) where samples
    is a list of (name, labels, value).  HELP and TYPE come before a
    family's samples, one TYPE per family, a family's samples together,
    counters end in _total, no sample twice, histogram buckets cumulative
    and ending in +Inf equal to _count."""
    text = body.decode("utf-8")
    assert text.endswith("\n"), "no final newline"
    types, helps, samples, seen = {}, set(), [], set()
    done, current = set(), None
    for line in text[:-1].split("\n"):
        assert line, "an empty line"
        if line.startswith("#"):
            parts = line.split(" ", 3)
            assert parts[0] == "#" and parts[1] in ("HELP", "TYPE"), line
            assert len(parts) == 4 and NAME.match(parts[2]), line
            fam = parts[2]
            assert fam not in done and fam != current, \
                "HELP/TYPE after samples of %s" % fam
            if parts[1] == "HELP":
                assert fam not in helps, "two HELP for %s" % fam
                helps.add(fam)
            else:
                assert fam not in types, "two TYPE for %s" % fam
                assert parts[3] in TYPES, line
                types[fam] = parts[3]
                if parts[3] == "counter":
                    assert fam.endswith("_total"), fam
            continue
        m = re.match(r"([^{ ]+)(?:\{(.*)\})? (\S+)\Z", line)
        assert m, "bad sample line %r" % line
        name = m.group(1)
        assert NAME.match(name), line
        labels = _labels(m.group(2) or "", line)
        value = _value(m.group(3), line)
        fam = _family(name, types)
        assert fam in types and fam in helps, "no HELP/TYPE for %r" % line
        assert fam not in done, "family %s split" % fam
        if current != fam:
            if current is not None:
                done.add(current)
            current = fam
        key = (name, tuple(sorted(labels.items())))
        assert key not in seen, "sample twice: %r" % line
        seen.add(key)
        if types[fam] == "counter":
            assert value >= 0 and not math.isnan(value), line
        samples.append((name, labels, value))
    _check_histograms(types, samples)
    return types, samples


def _check_histograms(types, samples):
    for fam, t in types.items():
        if t != "histogram":
            continue
        series = {}
        for name, labels, value in samples:
            if name == fam + "_bucket":
                rest = {k: v for k, v in labels.items() if k != "le"}
                key = tuple(sorted(rest.items()))
                series.setdefault(key, []).append(
                    (float(labels["le"].replace("Inf", "inf")), value))
        counts = {tuple(sorted(labels.items())): value
                  for name, labels, value in samples
                  if name == fam + "_count"}
        for key, buckets in series.items():
            les = [b[0] for b in buckets]
            assert les == sorted(les) and les[-1] == math.inf, fam
            vals = [b[1] for b in buckets]
            assert vals == sorted(vals), "%s buckets not cumulative" % fam
            assert counts[key] == vals[-1], "%s +Inf != _count" % fam


def test_parser_rejects_bad_text():
    """The parser can fail: each of these breaks one rule."""
    good = (b"# HELP x_total X.\n# TYPE x_total counter\n"
            b'x_total{a="1"} 2\n')
    parse(good)
    bad = [
        b"# TYPE x counter\n# HELP x X.\nx 1\n",             # no _total
        b'# HELP y Y.\n# TYPE y gauge\ny{a="1} 1\n',          # bad label
        b"# HELP y Y.\n# TYPE y gauge\n# TYPE y gauge\ny 1\n",  # two TYPE
        b"y 1\n",                                             # no TYPE
        b"# HELP y Y.\n# TYPE y gauge\ny 1\ny 2\n",           # twice
        b"# HELP y Y.\n# TYPE y gauge\ny one\n",              # value
        (b"# HELP h H.\n# TYPE h histogram\n"
         b'h_bucket{le="1"} 3\nh_bucket{le="+Inf"} 2\n'
         b"h_sum 1\nh_count 2\n"),                             # not cumul.
    ]
    for text in bad:
        try:
            parse(text)
        except AssertionError:
            continue
        raise AssertionError("parsed %r" % text)


def scrape(c):
    r = c.get("/metrics")
    assert r.status == 200, r
    ctype = {k.lower(): v for k, v in r.headers.items()}["content-type"]
    assert ctype.startswith("text/plain; version=0.0.4"), r
    return parse(r.body)


def value(samples, name, **labels):
    """The one sample of name whose labels include labels."""
    got = [v for n, lab, v in samples if n == name and
           all(lab.get(k) == w for k, w in labels.items())]
    assert len(got) == 1, (name, labels, got)
    return got[0]


def total(samples, name, **labels):
    return sum(v for n, lab, v in samples if n == name and
               all(lab.get(k) == w for k, w in labels.items()))


def wait_metric(c, cond, what):
    """Polls /metrics until cond(samples) is true; returns the samples.
    The store answers GET /v1/messages/ID a moment before the dispatcher
    counts the durable write, so the counters are waited for, then
    checked exactly."""
    def ok():
        _, s = scrape(c)
        return s if cond(s) else None
    return h.wait_for(ok, 10, what)


def state_of(samples, provider):
    on = [s for s in STATES
          if value(samples, "shivneri_provider_state", provider=provider,
                   state=s) == 1]
    assert len(on) == 1, (provider, on)
    return on[0]


MG_DOMAIN = "mg.example.com"


def mailgun_send(c, n):
    """POST /v3/DOMAIN/messages as a Mailgun SDK does (a urlencoded form,
    Basic api:KEY); returns our id."""
    form = "from=f%40example.com&to=mg{0}%40example.com&subject=mg{0}" \
           "&text=x".format(n)
    tok = base64.b64encode(b"api:key-anything").decode()
    r = c.post("/v3/%s/messages" % MG_DOMAIN, form, headers={
        "Content-Type": "application/x-www-form-urlencoded",
        "Authorization": "Basic " + tok})
    assert r.status == 200, r
    return r.json["id"][1:].split("@")[0]


def test_counters_move_as_mail_flows(make_cluster):
    port = h.free_port()
    c = make_cluster(providers=("a", "b"),
                     server_extra={"smtp_listen": "127.0.0.1:%d" % port,
                                   "mailgun_domains": MG_DOMAIN})
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")
    c.wait_state("a", "up")
    c.wait_state("b", "up")
    types, s = scrape(c)
    assert types["shivneri_attempts_total"] == "counter"
    assert types["shivneri_provider_state"] == "gauge"
    assert "shivneri_queue_memory" not in types
    assert types["shivneri_queue_messages"] == "gauge"
    for fam in ("shivneri_provider_max_message_bytes",
                "shivneri_provider_limit_learned_until_timestamp_seconds",
                "shivneri_provider_link_tls"):
        assert types[fam] == "gauge", fam
    assert value(s, "shivneri_build_info") == 1
    for p in ("a", "b"):
        assert state_of(s, p) == "up"
        assert value(s, "shivneri_provider_breaker", provider=p,
                     state="closed") == 1
        assert value(s, "shivneri_provider_heartbeat_age_seconds",
                     provider=p) >= 0
        # The size limit and the link, as GET /v1/providers says them.
        api = c.provider(p)
        assert value(s, "shivneri_provider_max_message_bytes",
                     provider=p) == api["max_message_bytes"] == 25 * 1024**2
        assert value(s, "shivneri_provider_limit_learned_until_"
                     "timestamp_seconds", provider=p) == 0
        assert value(s, "shivneri_provider_link_tls", provider=p) == 0
        assert api["link_tls"] is False, api
        for o in ("delivered", "permanent", "transient", "throttled",
                  "account", "ambiguous", "lost"):
            assert value(s, "shivneri_attempts_total", provider=p,
                         outcome=o) == 0
    assert total(s, "shivneri_messages_delivered_total") == 0

    for i in ("http", "smtp", "sendgrid", "mailgun"):
        assert value(s, "shivneri_messages_accepted_total", intake=i) == 0

    ids = [c.submit(h.message(i)) for i in range(3)]
    # A duplicate (200) stores nothing and is not counted.
    idem = {"Idempotency-Key": "k-90"}
    ids.append(c.submit(h.message(3), headers=idem))
    r = c.post("/v1/messages", h.message(3), headers=idem)
    assert r.status == 200 and r.json["duplicate"], r
    with smtplib.SMTP("127.0.0.1", port, timeout=h.scaled(10)) as cl:
        for i in range(2):
            cl.sendmail("ann@example.com", ["bob@example.net"],
                        b"From: ann@example.com\r\nTo: bob@example.net\r\n"
                        b"Subject: m%d\r\n\r\nhi\r\n" % i)
    # SendGrid: one message per personalization; the retry is a duplicate.
    sg = json.dumps({"personalizations": [
        {"to": [{"email": "p0@example.com"}]},
        {"to": [{"email": "p1@example.com"}]}],
        "from": {"email": "f@example.com"}, "subject": "sg",
        "content": [{"type": "text/plain", "value": "x"}]})
    for _ in range(2):
        r = c.post("/v3/mail/send", sg, headers={"Idempotency-Key": "k-sg"})
        assert r.status == 202, r
    # Mailgun: one message per request.
    ids += [mailgun_send(c, i) for i in range(2)]
    c.wait_delivered(ids)
    s = wait_metric(
        c, lambda s: total(s, "shivneri_messages_delivered_total") >= 10,
        "10 messages counted delivered")
    assert value(s, "shivneri_messages_accepted_total", intake="http") == 4
    assert value(s, "shivneri_messages_accepted_total", intake="smtp") == 2
    assert value(s, "shivneri_messages_accepted_total",
                 intake="sendgrid") == 2
    assert value(s, "shivneri_messages_accepted_total",
                 intake="mailgun") == 2
    assert total(s, "shivneri_messages_delivered_total") == 10
    assert total(s, "shivneri_attempts_total", outcome="delivered") == 10
    assert total(s, "shivneri_attempts_total") == 10
    assert total(s, "shivneri_messages_failed_total") == 0
    assert value(s, "shivneri_messages", status="delivered") == 10
    assert value(s, "shivneri_queue_oldest_age_seconds") == 0
    s = wait_metric(
        c, lambda s: total(s, "shivneri_send_duration_seconds_count") >= 10,
        "10 send latencies")
    types = scrape(c)[0]
    for p in ("a", "b"):
        n = value(s, "shivneri_messages_delivered_total", provider=p)
        assert n == value(s, "shivneri_attempts_total", provider=p,
                          outcome="delivered")
        # Every answered attempt has its send latency, every delivery its
        # time from acceptance; the parser checked the buckets.
        assert value(s, "shivneri_send_duration_seconds_count",
                     provider=p) == n
        assert value(s, "shivneri_delivery_duration_seconds_count",
                     provider=p) == n
        assert value(s, "shivneri_send_duration_seconds_bucket",
                     provider=p, le="+Inf") == n
    assert types["shivneri_send_duration_seconds"] == "histogram"

    # The operator's drain: one state is 1, and it is "disabled".
    r = c.post("/v1/providers/b/disable")
    assert r.status == 200, r
    s = wait_metric(c, lambda s: state_of(s, "b") == "disabled",
                    "b disabled in /metrics")
    assert state_of(s, "a") == "up"
    # An agent gone: down.
    c.agents["a"].kill9()
    wait_metric(c, lambda s: state_of(s, "a") == "down",
                "a down in /metrics")
    # Its link gone too: no link_tls sample, as the API's null.
    s = wait_metric(c, lambda s: not [1 for n, lab, _ in s
                                      if n == "shivneri_provider_link_tls"
                                      and lab.get("provider") == "a"],
                    "no link_tls of a in /metrics")
    assert c.provider("a")["link_tls"] is None
    assert value(s, "shivneri_provider_link_tls", provider="b") == 0


def test_failing_provider_counts_transient(make_cluster):
    fake = smtp_fake.SmtpFake(h.free_port()).start()
    try:
        fake.data_reply = "451 4.3.0 try again later"
        c = make_cluster(providers=("s", "m"))
        c.smtp_provider("s", fake.port)
        c.start_server()
        c.start_agent("s")
        c.wait_state("s", "up")
        mid = c.submit(h.message(1))
        s = wait_metric(
            c, lambda s: value(s, "shivneri_attempts_total", provider="s",
                               outcome="transient") >= 1,
            "a transient attempt at s")
        assert value(s, "shivneri_attempts_total", provider="s",
                     outcome="delivered") == 0
        assert total(s, "shivneri_messages_failed_total") == 0
        c.start_agent("m")
        c.wait_delivered([mid])
        s = wait_metric(
            c, lambda s: value(s, "shivneri_messages_delivered_total",
                               provider="m") >= 1, "m's delivery counted")
        # s is retried until m is up: the counter says exactly what the
        # message's record says.
        att = c.msg(mid)["attempts"]
        at_s = [a for a in att if a["provider"] == "s"]
        assert at_s and all(a["outcome"] == "transient" for a in at_s), att
        assert value(s, "shivneri_attempts_total", provider="s",
                     outcome="transient") == len(at_s)
        assert total(s, "shivneri_attempts_total") == len(att)
        # GET /v1/providers counts attempts by outcome, as the doc says:
        # s failed every attempt it had and no message.
        prov = c.providers_map()
        assert prov["s"]["failed"] == len(at_s) >= 1, prov["s"]
        assert prov["s"]["delivered"] == 0 and prov["s"]["lost"] == 0
        assert prov["m"]["delivered"] == 1 and prov["m"]["failed"] == 0
        assert value(s, "shivneri_messages_delivered_total",
                     provider="m") == 1
        assert value(s, "shivneri_messages_delivered_total",
                     provider="s") == 0
        assert total(s, "shivneri_messages_failed_total") == 0
    finally:
        fake.stop()


def test_oldest_queued_age(make_cluster):
    c = make_cluster(providers=("a",))
    c.start_server()
    types, s = scrape(c)
    assert types["shivneri_queue_oldest_age_seconds"] == "gauge"
    assert value(s, "shivneri_queue_oldest_age_seconds") == 0
    # Nobody up: two messages wait; the age is the older one's.
    first = c.submit(h.message(1))
    c.submit(h.message(2))
    s = wait_metric(
        c, lambda s: value(s, "shivneri_queue_oldest_age_seconds") >= 0.3,
        "the oldest queued message ageing")
    age = value(s, "shivneri_queue_oldest_age_seconds")
    created = c.msg(first)["created_at"]
    assert age < 60, (age, created)
    later = wait_metric(
        c, lambda s: value(s, "shivneri_queue_oldest_age_seconds") > age,
        "the age growing")
    assert value(later, "shivneri_queue_messages", where="ready") + \
        value(later, "shivneri_queue_messages", where="loaded") == 2
    c.start_agent("a")
    wait_metric(
        c, lambda s: value(s, "shivneri_queue_oldest_age_seconds") == 0 and
        value(s, "shivneri_messages", status="delivered") == 2,
        "an empty queue: age 0")
