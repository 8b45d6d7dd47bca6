"""HTTP connectors over https and HTTP/2, against local TLS stand-ins with
certificate verification on (the ses connector on http_multi; the others
share the transport).

The stand-in is tests/fakes/fake_ses.py served over TLS by fakelib with a
certificate for 127.0.0.1 (IP SAN) from a CA made by openssl in this
test's folder, and h2 offered by ALPN (python3-h2 frames it).

- With tls_ca_file = that CA the message is delivered over https; with a
  CA that did not sign the certificate nothing is sent (the stand-in sees
  a handshake refused and no request), the attempt is transient with
  curl's certificate error, and the message goes to the other provider.
- HTTP/2 multiplexing: N sends held at the stand-in until all N are in
  flight together are all answered, over one connection that spoke h2,
  though they started while that connection was still in its handshake.
  Against an https API that takes only HTTP/1.1 the same burst is not
  queued behind the first answer: all N are in flight at once.  Against
  one whose handshake hangs, a burst fails within about two connect
  timeouts, not one after the other, and the other provider delivers.
- No key turns verification off: check-config refuses every spelling of
  one as an unknown key.
"""

import os
import subprocess
import sys

import pytest

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import fake_ses  # noqa: E402
import fakelib  # noqa: E402

AKID = "AKIDSHIVNERITLS"
SECRET = "TlsSecret/" + os.urandom(8).hex()
N_H2 = 16


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("certs"))
    ca, cert, key = fakelib.make_certs(d, "good-")
    other_ca, _, _ = fakelib.make_certs(d, "other-")
    return {"ca": ca, "cert": cert, "key": key, "other_ca": other_ca}


def ses_section(c, fake, ca, **kw):
    key = os.path.join(c.dir, "ses.key")
    if not os.path.exists(key):
        c.write_secret(key, SECRET)
    p = {"type": "ses", "spawn": "no", "max_in_flight": N_H2,
         "region": "us-east-1", "access_key_id": AKID,
         "secret_access_key_file": key, "base_url": fake.base_url,
         "tls_ca_file": ca, "connect_timeout_ms": int(h.scaled(2000)),
         "request_timeout_ms": int(h.scaled(5000))}
    p.update(kw)
    return p


def start(c, sections):
    def write_config():
        with open(c.config_path, "w") as f:
            f.write(c.render(c.server_section(), sections))
    c.write_config = write_config
    c.write_config()
    c.start_server()
    for name in sections:
        c.start_agent(name)


def test_https_verified_and_wrong_ca_is_transient(make_cluster, certs):
    """bad (priority 1) trusts a CA that did not sign the stand-in's
    certificate, good (priority 2) the one that did: the message is
    refused by bad's handshake before any request and delivered by
    good over https."""
    fake = fake_ses.FakeSes(AKID, SECRET).start(
        tls=(certs["cert"], certs["key"]), h2=True)
    try:
        assert fake.base_url.startswith("https://127.0.0.1:")
        c = make_cluster(providers=("bad", "good"),
                         server_extra={"scheduler": "priority"})
        start(c, {"bad": ses_section(c, fake, certs["other_ca"],
                                     priority=1),
                  "good": ses_section(c, fake, certs["ca"], priority=2)})
        mid = c.submit(h.message(1, subject="over https"))
        c.wait_delivered([mid])
        m = c.msg(mid)
        att = m["attempts"]
        assert [a["provider"] for a in att] == ["bad", "good"], m
        assert att[0]["outcome"] == "transient", m
        assert "certificate" in att[0]["detail"], m
        assert att[1]["outcome"] == "delivered", m
        assert m["provider"] == "good", m
        assert fake.tls_failures >= 1
        # bad never got a request through: one arrived, good's.
        assert len(fake.received) == 1 and not fake.errors, fake.errors
        assert fake.requests == 1, fake.requests
    finally:
        fake.stop()


def test_h2_many_sends_share_one_connection(make_cluster, certs):
    """N sends, held by the stand-in until all N are in flight at once,
    are all answered (each delivered with its own MessageId) over one
    TLS connection that negotiated h2."""
    fake = fake_ses.FakeSes(AKID, SECRET).start(
        tls=(certs["cert"], certs["key"]), h2=True)
    fake.gate = N_H2
    # The sends start while the first connection is still in its TLS
    # handshake, as they do against a far API: a client that opened a
    # connection per send until it knew h2 would show here.
    fake.handshake_delay = 0.3
    try:
        c = make_cluster(providers=("h2",))
        start(c, {"h2": ses_section(c, fake, certs["ca"])})
        ids = [c.submit(h.message(10 + i, subject="h2 %d" % i))
               for i in range(N_H2)]
        c.wait_delivered(ids)
        assert fake.gated >= N_H2, "the sends never were all in flight"
        assert (fake.connections, fake.h2_connections) == (1, 1), \
            (fake.connections, fake.h2_connections, fake.max_streams)
        assert fake.max_streams == N_H2, fake.max_streams
        assert len(fake.received) == N_H2 and not fake.errors, fake.errors
        pmids = {c.msg(i)["provider_message_id"] for i in ids}
        assert len(pmids) == N_H2 and None not in pmids, pmids
    finally:
        fake.stop()


def test_https_http11_burst_not_queued(make_cluster, certs):
    """Against an https API that answers ALPN with http/1.1 only, a burst
    waits for nothing but the first handshake: N sends held until all N
    are in flight together get there (over N connections) and are all
    answered."""
    n = 8
    fake = fake_ses.FakeSes(AKID, SECRET).start(
        tls=(certs["cert"], certs["key"]), h2=False)
    fake.gate = n
    fake.handshake_delay = 0.3
    try:
        c = make_cluster(providers=("h1",))
        start(c, {"h1": ses_section(c, fake, certs["ca"], max_in_flight=n)})
        ids = [c.submit(h.message(40 + i, subject="h1 %d" % i))
               for i in range(n)]
        c.wait_delivered(ids, timeout=8)
        assert fake.max_inflight == n, fake.max_inflight
        assert fake.h2_connections == 0
        assert n <= fake.connections <= 2 * n, fake.connections
        assert len(fake.received) == n and not fake.errors, fake.errors
    finally:
        fake.stop()


def test_hung_handshake_fails_the_burst_in_parallel(make_cluster, certs):
    """An https API that accepts connections and never finishes a TLS
    handshake: every send of a burst fails within about two connect
    timeouts (the first connection's, then its own), transient, and b
    delivers them, not one connect timeout after the other."""
    n = 6
    connect_ms = int(h.scaled(500))
    fake = fake_ses.FakeSes(AKID, SECRET).start(
        tls=(certs["cert"], certs["key"]), h2=True)
    fake.handshake_delay = 60  # released by stop()
    try:
        c = make_cluster(providers=("hs", "b"),
                         server_extra={"scheduler": "priority"})
        b = c.provider_section("b")
        b.update(priority=2)
        start(c, {"hs": ses_section(c, fake, certs["ca"], priority=1,
                                    max_in_flight=n,
                                    connect_timeout_ms=connect_ms),
                  "b": b})
        ids = [c.submit(h.message(60 + i, subject="hs %d" % i))
               for i in range(n)]
        c.wait_delivered(ids, timeout=15)
        for mid in ids:
            m = c.msg(mid)
            a = m["attempts"][0]
            # transient, or lost when the breaker opened first.
            assert a["provider"] == "hs", m
            assert a["outcome"] in ("transient", "lost"), m
            assert m["provider"] == "b", m
        # The agent logs each failed send; all within ~2 connect timeouts
        # of the first.
        times = []
        with open(c.agents["hs"].log_path, errors="replace") as f:
            for ln in f:
                if " result " in ln and "outcome=transient" in ln:
                    times.append(ln.split()[0])
        assert len(times) == n, times
        import datetime
        ts = [datetime.datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ")
              for t in times]
        spread = (max(ts) - min(ts)).total_seconds()
        assert spread < 2.5 * connect_ms / 1000.0, (spread, times)
    finally:
        fake.stop()


@pytest.mark.parametrize("key", ["tls_verify", "tls_verify_peer",
                                 "ssl_verify", "tls_insecure", "insecure",
                                 "verify_certificates"])
def test_no_key_turns_verification_off(tmp_path, certs, key):
    p = tmp_path / "x.ini"
    p.write_text("\n".join([
        "[server]",
        "data_dir = %s" % (tmp_path / "data"),
        "http_listen = 127.0.0.1:1",
        "",
        "[provider.s]",
        "type = ses",
        "region = us-east-1",
        "access_key_id = %s" % AKID,
        "secret_access_key_file = env:SHIVNERI_T60_SECRET",
        "tls_ca_file = %s" % certs["ca"],
        "%s = no" % key,
    ]) + "\n")
    env = dict(os.environ, SHIVNERI_T60_SECRET=SECRET)
    r = subprocess.run([h.BIN, "check-config", "-c", str(p)], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    assert "unknown key '%s'" % key in r.stderr, r.stderr


def test_unreadable_ca_file_refused(tmp_path):
    """tls_ca_file is checked like every file key: one that cannot be read
    is named with its line, not silently replaced by the system's store."""
    p = tmp_path / "y.ini"
    p.write_text("\n".join([
        "[server]",
        "data_dir = %s" % (tmp_path / "data"),
        "http_listen = 127.0.0.1:1",
        "",
        "[provider.s]",
        "type = ses",
        "region = us-east-1",
        "access_key_id = %s" % AKID,
        "secret_access_key_file = env:SHIVNERI_T60_SECRET",
        "tls_ca_file = %s" % (tmp_path / "no-such-ca.pem"),
    ]) + "\n")
    env = dict(os.environ, SHIVNERI_T60_SECRET=SECRET)
    r = subprocess.run([h.BIN, "check-config", "-c", str(p)], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r
    assert "%s:10" % p in r.stderr, r.stderr
    assert "tls_ca_file: cannot read" in r.stderr, r.stderr
