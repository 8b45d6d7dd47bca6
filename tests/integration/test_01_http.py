"""The HTTP API of SPEC.md: submission round trip, idempotency, provider
drain, stats, health and readiness, API keys."""

import os

import pytest

import shivneri_harness as h


@pytest.fixture(scope="module")
def cl(module_cluster_factory):
    c = module_cluster_factory(providers=("a", "b"))
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")
    return c


def test_healthz(cl):
    r = cl.get("/healthz")
    assert r.status == 200, r


def test_readyz_up(cl):
    r = cl.get("/readyz")
    assert r.status == 200, r
    assert r.json["status"] == "ready" and r.json["reasons"] == [], r


def test_submit_get_round_trip(cl):
    msg = h.message(1, to=["bob@example.net", "carol@example.org"],
                    cc=["dan@example.com"], subject="Round trip",
                    headers={"X-Campaign": "c1"}, tags=["welcome"])
    mid = cl.submit(msg)
    m = cl.msg(mid)
    assert m["id"] == mid
    assert m["status"] in ("queued", "sending", "delivered"), m
    assert m["subject"] == "Round trip", m
    assert "ann@example.com" in m["from"], m
    assert "bob@example.net" in m["to"] and "carol@example.org" in m["to"], m
    for k in ("created_at", "updated_at"):
        assert isinstance(m[k], str) and "T" in m[k], m
    cl.wait_delivered([mid])
    m = cl.msg(mid)
    assert m["provider"] in ("a", "b"), m
    assert m["error"] is None, m
    att = m["attempts"]
    assert att and att[-1]["outcome"] == "delivered", m
    assert att[-1]["provider"] == m["provider"], m
    assert [a["n"] for a in att] == list(range(1, len(att) + 1)), m
    files = h.maildir_ids(cl.maildir(m["provider"]))
    assert files.get(mid) == 1, (mid, files)


def test_to_as_string(cl):
    mid = cl.submit(h.message(2, to="bob@example.net"))
    cl.wait_delivered([mid])
    assert "bob@example.net" in cl.msg(mid)["to"]


def test_idempotency(cl):
    before = cl.stats()
    hdr = {"Idempotency-Key": "key-" + os.urandom(8).hex()}
    r1 = cl.post("/v1/messages", h.message(3), headers=hdr)
    assert r1.status == 202, r1
    assert r1.json["status"] == "queued", r1
    r2 = cl.post("/v1/messages", h.message(3), headers=hdr)
    assert r2.status == 200, r2
    assert r2.json["id"] == r1.json["id"], (r1, r2)
    # A different key is a different message.
    r3 = cl.post("/v1/messages", h.message(3),
                 headers={"Idempotency-Key": "other-" + os.urandom(8).hex()})
    assert r3.status == 202, r3
    assert r3.json["id"] != r1.json["id"]
    cl.wait_delivered([r1.json["id"], r3.json["id"]])
    after = cl.stats()
    total = sum(after[k] for k in ("queued", "sending", "delivered",
                                   "failed"))
    total0 = sum(before[k] for k in ("queued", "sending", "delivered",
                                     "failed"))
    assert total - total0 == 2, (before, after)


def test_unknown_message_404(cl):
    h.assert_error(cl.get("/v1/messages/01ZZZZZZZZZZZZZZZZZZZZZZZZ"), 404,
                   {"not_found"})
    h.assert_error(cl.get("/v1/messages/nope"), 404, {"not_found"})


def test_unknown_provider_404(cl):
    h.assert_error(cl.post("/v1/providers/nosuch/disable"), 404,
                   {"not_found"})
    h.assert_error(cl.post("/v1/providers/nosuch/enable"), 404,
                   {"not_found"})


def test_disable_enable(cl):
    r = cl.post("/v1/providers/a/disable")
    assert r.status in (200, 204), r
    try:
        cl.wait_state("a", "disabled", timeout=2)
        before_a = h.maildir_count(cl.maildir("a"))
        ids = cl.submit_many(10, threads=2, start=100)
        cl.wait_delivered(ids)
        for mid in ids:
            assert cl.msg(mid)["provider"] == "b"
        assert h.maildir_count(cl.maildir("a")) == before_a
        assert cl.provider("a")["state"] == "disabled"
    finally:
        r = cl.post("/v1/providers/a/enable")
    assert r.status in (200, 204), r
    cl.wait_state("a", "up", timeout=2)
    ids = cl.submit_many(10, threads=1, start=200)
    cl.wait_delivered(ids)
    provs = {cl.msg(mid)["provider"] for mid in ids}
    assert provs == {"a", "b"}, provs


def test_stats_counts(cl):
    before = cl.stats()
    for k in ("queued", "sending", "delivered", "failed"):
        assert isinstance(before[k], int) and before[k] >= 0, before
    ids = cl.submit_many(5, threads=1, start=300)
    cl.wait_delivered(ids)

    def settled():
        s = cl.stats()
        return s if s["delivered"] - before["delivered"] == 5 else None
    after = h.wait_for(settled, 5, "stats delivered +5")
    assert after["failed"] == before["failed"], (before, after)
    assert after["queued"] == 0 and after["sending"] == 0, after


def test_providers_listing(cl):
    provs = cl.providers_map()
    for name in ("a", "b"):
        p = provs[name]
        assert p["type"] == "maildir", p
        assert p["state"] == "up", p
        assert p["remote"] in (True, False), p
        for k in ("in_flight", "delivered", "failed"):
            assert isinstance(p[k], int), p
        assert p["health"] in ("ok", "degraded", "down"), p
        assert p["last_heartbeat_ms_ago"] is None or \
            p["last_heartbeat_ms_ago"] >= 0, p


def test_readyz_without_provider(make_cluster):
    c = make_cluster(providers=("a",))
    c.start_server()
    r = c.get("/readyz")
    assert r.status == 503, r
    # It says why: no provider, and the store is fine.
    assert r.json["provider_up"] is False, r
    assert r.json["store"] is True and r.json["store_error"] is None, r
    assert r.json["reasons"] == ["no provider up"], r
    assert c.get("/healthz").status == 200
    c.start_agent("a")
    h.wait_for(lambda: c.get("/readyz").status == 200, 3, "/readyz 200")


def test_api_keys(make_cluster, tmp_path):
    keys = tmp_path / "api-keys"
    keys.write_text("first-key-0123456789\nsecond-key-abcdef\n")
    os.chmod(keys, 0o600)
    c = make_cluster(providers=("a",),
                     server_extra={"api_keys_file": str(keys)})
    c.start_server()
    assert c.get("/healthz").status == 200
    h.assert_error(c.post("/v1/messages", h.message(1)), 401,
                   {"unauthorized"})
    h.assert_error(c.post("/v1/messages", h.message(1),
                          headers={"Authorization": "Bearer wrong"}), 401,
                   {"unauthorized"})
    h.assert_error(c.post("/v1/messages", h.message(1),
                          headers={"Authorization": "Bearer first-key"}),
                   401, {"unauthorized"})
    h.assert_error(c.get("/v1/stats"), 401, {"unauthorized"})
    r = c.post("/v1/messages", h.message(1),
               headers={"Authorization": "Bearer second-key-abcdef"})
    assert r.status == 202, r
    r = c.get("/v1/stats",
              headers={"Authorization": "Bearer first-key-0123456789"})
    assert r.status == 200, r
    assert r.json["queued"] + r.json["sending"] == 1, r


def test_api_keys_reload(make_cluster, tmp_path):
    """SIGHUP rereads api_keys_file; a version others may read is refused
    and the keys in force stay (the rule of check-config, on reload)."""
    import signal

    keys = tmp_path / "api-keys"
    keys.write_text("old-key-0123456789\n")
    os.chmod(keys, 0o600)
    c = make_cluster(providers=("a",),
                     server_extra={"api_keys_file": str(keys)})
    c.start_server()

    def status(key):
        return c.get("/v1/stats",
                     headers={"Authorization": "Bearer " + key}).status

    assert status("old-key-0123456789") == 200
    keys.write_text("new-key-0123456789\n")
    os.chmod(keys, 0o644)
    c.server.signal(signal.SIGHUP)
    h.wait_for(lambda: b"keys_refused" in open(c.server.log_path, "rb").read(),
               5, "the refused reload in the log")
    assert status("old-key-0123456789") == 200
    assert status("new-key-0123456789") == 401
    os.chmod(keys, 0o600)
    c.server.signal(signal.SIGHUP)
    h.wait_for(lambda: status("new-key-0123456789") == 200, 5,
               "the new key after a good reload")
    assert status("old-key-0123456789") == 401


def test_delivered_mime_content(cl):
    import base64
    import email
    import email.policy

    blob = os.urandom(2048)
    msg = h.message(4, subject="Content check \u00e9t\u00e9",
                    bcc=["hidden@example.org"], reply_to="help@example.com",
                    html="<p>hi</p>", headers={"X-Campaign": "c9"},
                    attachments=[{"filename": "a.bin",
                                  "content_type": "application/octet-stream",
                                  "content_base64":
                                  base64.b64encode(blob).decode()}])
    mid = cl.submit(msg)
    cl.wait_delivered([mid])
    prov = cl.msg(mid)["provider"]
    d = os.path.join(cl.maildir(prov), "new")
    parsed = None
    for name in os.listdir(d):
        with open(os.path.join(d, name), "rb") as f:
            m = email.message_from_binary_file(f, policy=email.policy.default)
        if m["Message-ID"].strip().startswith("<" + mid + "@"):
            parsed = m
    assert parsed is not None
    assert parsed["Bcc"] is None, "Bcc leaked into the headers"
    assert str(parsed["Subject"]) == "Content check \u00e9t\u00e9"
    assert "ann@example.com" in str(parsed["From"])
    assert "bob@example.net" in str(parsed["To"])
    assert "help@example.com" in str(parsed["Reply-To"])
    assert str(parsed["X-Campaign"]) == "c9"
    assert parsed["Date"] is not None
    parts = {p.get_content_type(): p for p in parsed.walk()}
    assert "text/plain" in parts and "text/html" in parts, list(parts)
    att = [p for p in parsed.walk() if p.get_filename() == "a.bin"]
    assert len(att) == 1
    assert att[0].get_payload(decode=True) == blob


def test_client_message_id_and_date_kept(cl):
    import email
    import email.policy

    msg = h.message(5, headers={"Message-ID": "<order-5@shop.example.com>",
                                "Date": "Tue, 01 Dec 2026 10:00:00 +0100"})
    mid = cl.submit(msg)
    cl.wait_delivered([mid])
    d = os.path.join(cl.maildir(cl.msg(mid)["provider"]), "new")
    found = []
    for name in os.listdir(d):
        with open(os.path.join(d, name), "rb") as f:
            m = email.message_from_binary_file(f, policy=email.policy.default)
        if "order-5@shop.example.com" in str(m["Message-ID"]):
            found.append(m)
    assert len(found) == 1
    m = found[0]
    # Added only when missing: one of each, the client's.
    assert len(m.get_all("Message-ID")) == 1
    assert len(m.get_all("Date")) == 1
    assert "01 Dec 2026 10:00:00 +0100" in str(m["Date"])


def test_metrics(cl):
    r = cl.get("/metrics")
    assert r.status == 200, r
    assert b"# TYPE" in r.body or b"# HELP" in r.body, r.body[:200]


def test_store_write_failure_503(make_cluster):
    """Defect 2, HTTP side: while the store cannot write (every file write
    fails, as on a full disk: RLIMIT_FSIZE of 1 byte on the server), a
    submission is answered 503 unavailable, and /readyz answers 503 and
    says the store is why.  Once the disk is back, messages are stored."""
    import resource

    c = make_cluster(providers=("a",))
    c.start_server()
    c.start_agent("a")
    pid = c.server.pid
    old = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, old[1]))
    try:
        r = c.post("/v1/messages", h.message(1, text="x" * 20000 + "\n"))
        h.assert_error(r, 503, {"unavailable"})
        r = c.get("/readyz")
        assert r.status == 503, r
        assert r.json["store"] is False, r
        assert any(x.startswith("store not writable")
                   for x in r.json["reasons"]), r
        # While the store cannot write, intake refuses at once.
        r = c.post("/v1/messages", h.message(3))
        h.assert_error(r, 503, {"unavailable"})
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, old)

    def stored():
        r = c.post("/v1/messages", h.message(2))
        return r.json["id"] if r.status == 202 else None
    mid = h.wait_for(stored, 10, "a 202 once the disk is back")
    c.wait_delivered([mid])
    assert c.server.alive()
