"""The queue view and retry (issue 10): GET /v1/messages pages through the
queue filtered by status and provider with no message twice or missed
while new ones arrive, refuses bad parameters with a 400 naming them, and
POST /v1/messages/ID/retry puts a failed message back to queued with a
fresh budget (its TTL too), once, durably; /v1/stats follows."""

import os
import subprocess
import sys
import threading
import urllib.parse

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import smtp_fake  # noqa: E402

UNKNOWN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def cli(c, *args):
    return subprocess.run([h.BIN, args[0], "--url",
                           "http://127.0.0.1:%d" % c.http_port] +
                          list(args[1:]), capture_output=True, text=True,
                          timeout=h.scaled(20), stdin=subprocess.DEVNULL)


def page(c, **params):
    r = c.get("/v1/messages?" + urllib.parse.urlencode(params))
    assert r.status == 200, r
    return r.json


def walk(c, limit_pages=100, **params):
    """Every page of a listing: the ids in order, the number of pages."""
    ids, pages, before = [], 0, None
    while pages < limit_pages:
        q = dict(params)
        if before is not None:
            q["before"] = before
        j = page(c, **q)
        ids += [m["id"] for m in j["messages"]]
        pages += 1
        before = j["next"]
        if before is None:
            return ids, pages
    raise AssertionError("no end of the listing after %d pages" % pages)


def test_list_pages_filters_and_bad_parameters(make_cluster):
    c = make_cluster(providers=("a", "b"))
    c.start_server()
    # Nobody up: every message stays queued.
    old = [c.submit(h.message(i)) for i in range(12)]
    seen, before, pages = [], None, 0
    while True:
        q = {"status": "queued", "limit": 5}
        if before:
            q["before"] = before
        j = page(c, **q)
        assert len(j["messages"]) <= 5, j
        for m in j["messages"]:
            assert m["status"] == "queued" and m["attempt_count"] == 0, m
            assert m["to"] == ["bob@example.net"] or m["to"], m
        seen += [m["id"] for m in j["messages"]]
        # New messages arrive between pages: on top, never in a later
        # page, and nothing of the first set is missed or repeated.
        c.submit(h.message(100 + pages))
        pages += 1
        before = j["next"]
        if before is None:
            break
        assert pages < 10
    assert pages == 3, pages
    assert len(seen) == len(set(seen)) == 12, seen
    assert set(seen) == set(old)
    assert seen == sorted(old, reverse=True), "newest first"
    every, _ = walk(c, limit=7)
    assert len(every) == 15 and len(set(every)) == 15
    # The default page is 50, and the unfiltered list has them all.
    assert len(page(c)["messages"]) == 15 and page(c)["next"] is None

    c.start_agent("a")
    c.wait_delivered(old)
    c.start_agent("b")
    done, _ = walk(c, status="delivered", limit=4)
    assert len(done) == len(set(done)) == 15
    at_a, _ = walk(c, status="delivered", provider="a", limit=3)
    assert len(at_a) == 15, "every message went to a, the only one up"
    assert walk(c, provider="b")[0] == []
    assert walk(c, status="queued")[0] == []
    j = page(c, status="delivered", limit=1)
    m = j["messages"][0]
    assert m["provider"] == "a" and m["attempt_count"] == 1, m
    assert m["error"] is None and m["created_at"] and m["updated_at"], m

    bad = ["status=bogus", "status=", "limit=0", "limit=201", "limit=abc",
           "limit=%2B5", "limit=1&limit=2", "x=1", "provider=%zz",
           "provider=" + "p" * 65, "provider=a%20b", "provider=a%00",
           "before=nope", "status=delivered&before=" + old[0],
           "status=queued&before=12.34", "q" * 1100 + "=1"]
    for qs in bad:
        r = c.get("/v1/messages?" + qs)
        h.assert_error(r, 400, ("bad_request",))
    r = h.http(c.http_port, "HEAD", "/v1/messages?status=queued")
    assert r.status == 200 and r.body == b"", r
    r = h.http(c.http_port, "DELETE", "/v1/messages")
    h.assert_error(r, 405)
    assert "GET" in {k.lower(): v for k, v in r.headers.items()}["allow"]
    r = c.get("/v1/messages/%s/retry" % old[0])
    h.assert_error(r, 405)
    assert c.stats() == {"queued": 0, "sending": 0, "delivered": 15,
                         "failed": 0}


def smtp_cluster(make_cluster, fake, **server_extra):
    c = make_cluster(providers=("s",), server_extra=server_extra)
    c.smtp_provider("s", fake.port)
    return c


def wait_status(c, mid, status, timeout=10):
    return h.wait_for(lambda: c.msg(mid)["status"] == status and c.msg(mid),
                      timeout, "%s to be %s" % (mid, status))


def test_retry_failed_once_then_delivered(make_cluster):
    fake = smtp_fake.SmtpFake(h.free_port()).start()
    try:
        fake.data_reply = "550 5.1.1 no such user"
        c = smtp_cluster(make_cluster, fake)
        c.start_server()
        c.start_agent("s")
        mid = c.submit(h.message(1))
        m = wait_status(c, mid, "failed")
        assert [a["outcome"] for a in m["attempts"]] == ["permanent"], m
        h.wait_for(lambda: c.stats()["failed"] == 1, 5, "failed counted")
        listed = page(c, status="failed")["messages"]
        assert [x["id"] for x in listed] == [mid], listed
        assert "no such user" in listed[0]["error"], listed

        h.assert_error(c.post("/v1/messages/%s/retry" % UNKNOWN_ID), 404,
                       ("not_found",))
        h.assert_error(c.post("/v1/messages/nope/retry"), 404,
                       ("not_found",))
        # The same through the CLI.
        r = cli(c, "messages", "--status", "failed", "--limit", "5")
        assert r.returncode == 0, r
        lines = r.stdout.splitlines()
        assert lines[0].split()[:3] == ["ID", "STATUS", "PROVIDER"], r
        assert lines[1].split()[:4] == [mid, "failed", "s", "1"], r
        assert "no such user" in lines[1] and len(lines) == 2, r
        r = cli(c, "messages", "--limit", "0")
        assert r.returncode == 1 and "limit" in r.stderr, r
        r = cli(c, "messages", "extra")
        assert r.returncode == 2, r
        r = cli(c, "retry", UNKNOWN_ID)
        assert r.returncode == 1 and "404" in r.stderr, r
        r = cli(c, "retry")
        assert r.returncode == 2, r

        fake.data_reply = None
        # Two retries at once: one wins, the other is told it is not
        # failed any more; the message is sent once.
        got = []

        def retry():
            got.append(c.post("/v1/messages/%s/retry" % mid))
        ts = [threading.Thread(target=retry) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(h.scaled(10))
        codes = sorted(r.status for r in got)
        assert codes == [200, 409], got
        ok = [r for r in got if r.status == 200][0]
        assert ok.json == {"id": mid, "status": "queued"}, ok
        h.assert_error([r for r in got if r.status == 409][0], 409,
                       ("not_failed",))
        m = wait_status(c, mid, "delivered")
        assert [a["outcome"] for a in m["attempts"]] == \
            ["permanent", "delivered"], m
        assert m["attempt_count"] == 1 and m["error"] is None, m
        # The refused try and one more: the fake keeps what it refused.
        assert len(fake.messages()) == 2
        h.assert_error(c.post("/v1/messages/%s/retry" % mid), 409,
                       ("not_failed",))
        r = cli(c, "retry", mid)
        assert r.returncode == 1 and "not_failed" in r.stderr, r
        h.wait_for(lambda: c.stats() == {"queued": 0, "sending": 0,
                                         "delivered": 1, "failed": 0},
                   5, "counts after the retry")

        # A queued message is not retried either.
        c.agents["s"].kill9()
        c.wait_state("s", "down")
        q = c.submit(h.message(2))
        h.assert_error(c.post("/v1/messages/%s/retry" % q), 409,
                       ("not_failed",))
        assert c.msg(q)["status"] == "queued"
    finally:
        fake.stop()


def test_retry_after_ttl_survives_restart(make_cluster):
    fake = smtp_fake.SmtpFake(h.free_port()).start()
    try:
        fake.data_reply = "451 4.3.0 try again later"
        # No breaker: the provider stays up between its refusals.
        c = smtp_cluster(make_cluster, fake, message_ttl_s=2,
                         breaker_threshold=1000, retry_max_ms=300,
                         max_attempts=1000)
        c.start_server()
        c.start_agent("s")
        mid = c.submit(h.message(1))
        m = wait_status(c, mid, "failed", timeout=15)
        assert m["error"].startswith("expired"), m
        tries = len(m["attempts"])
        # Retried, its TTL counts again from the retry: it is not expired
        # after its first new attempt (its creation is over 2 s ago) but
        # backs off and is tried again.
        r = c.post("/v1/messages/%s/retry" % mid)
        assert r.status == 200, r
        m = h.wait_for(lambda: (lambda m: (len(m["attempts"]) >= tries + 2
                                           or m["status"] == "failed")
                                and m)(c.msg(mid)),
                       10, "two new attempts or a failure")
        assert len(m["attempts"]) >= tries + 2, m
        # ... until the new budget is spent too.
        m = wait_status(c, mid, "failed", timeout=15)
        assert m["error"].startswith("expired"), m
        tries = len(m["attempts"])
        h.wait_for(lambda: c.stats()["failed"] == 1, 5, "failed counted")

        # Nobody up while it is retried and the server restarts: the retry
        # is on disk, the message stays queued.
        c.agents["s"].kill9()
        c.wait_state("s", "down")
        r = cli(c, "retry", mid)
        assert r.returncode == 0 and r.stdout == mid + " queued\n", r
        assert c.msg(mid)["status"] == "queued"
        assert c.stats()["queued"] == 1 and c.stats()["failed"] == 0
        c.server.kill9()
        c.start_server()
        assert c.msg(mid)["status"] == "queued"
        assert c.stats() == {"queued": 1, "sending": 0, "delivered": 0,
                             "failed": 0}
        assert [x["id"] for x in page(c, status="queued")["messages"]] == \
            [mid]
        r = cli(c, "messages", "--json", "--status", "queued")
        assert r.returncode == 0 and mid in r.stdout, r
        fake.data_reply = None
        c.start_agent("s")
        m = wait_status(c, mid, "delivered")
        assert len(m["attempts"]) == tries + 1, m
        assert m["attempts"][-1]["outcome"] == "delivered", m
        h.wait_for(lambda: c.stats() == {"queued": 0, "sending": 0,
                                         "delivered": 1, "failed": 0},
                   5, "counts after delivery")
    finally:
        fake.stop()
