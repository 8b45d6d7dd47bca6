"""The agent port against intruders: a wrong secret never registers, junk
is dropped without harm to the server or to the real agents, and a right
secret with a new name registers on the fly."""

import json
import os
import random
import socket
import struct
import time

import pytest

import shivneri_harness as h


@pytest.fixture(scope="module")
def cl(module_cluster_factory):
    c = module_cluster_factory(providers=("a", "b"))
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")
    return c


def still_serving(cl, n=4, start=0):
    """The server answers, both real agents are up and mail flows."""
    assert cl.get("/healthz").status == 200
    for name in ("a", "b"):
        assert cl.provider(name)["state"] == "up", cl.providers_map()
    ids = cl.submit_many(n, threads=1, start=start)
    cl.wait_delivered(ids)


def frame(ftype, payload):
    return struct.pack(">IB", len(payload) + 1, ftype) + payload


def hello(name="intruder"):
    return frame(1, json.dumps({
        "version": 1, "name": name, "type": "maildir",
        "nonce": os.urandom(32).hex(), "pid": os.getpid()}).encode())


def assert_closed(s, timeout):
    """Reads s until the peer closes it (EOF or reset); fails when it is
    still open after timeout.  What the server says first (an ERROR
    frame, a CHALLENGE) is read and ignored."""
    deadline = time.monotonic() + h.scaled(timeout)
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "the server kept a junk connection open"
        s.settimeout(remaining)
        try:
            d = s.recv(65536)
        except ConnectionResetError:
            return
        except socket.timeout:
            continue
        if not d:
            return


def expect_dropped(cl, data, timeout=5):
    """Sends data on a fresh agent-port connection and waits until the
    server closes it."""
    s = socket.create_connection(("127.0.0.1", cl.agent_port),
                                 timeout=h.scaled(timeout))
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return
        assert_closed(s, timeout)
    finally:
        s.close()


JUNK = [
    ("random", random.Random(20240601).randbytes(4096)),
    ("http", b"GET /v1/providers HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("huge_length", b"\xff\xff\xff\xff" + b"\x01" * 64),
    ("zero_length", b"\x00\x00\x00\x00"),
    ("unknown_type", frame(0x63, b"{}")),
    ("heartbeat_first", frame(6, b'{"seq":1,"health":"ok","in_flight":0,'
                                 b'"load":0}')),
    ("result_first", frame(8, b'{"job_id":1,"message_id":"x",'
                              b'"outcome":"delivered"}')),
    ("hello_not_json", frame(1, b"\x00\x01not json at all")),
    ("hello_then_junk", hello() + b"\x00\x00\x00\x09\x03garbage!"),
    ("hello_then_bad_auth", hello() + frame(3, json.dumps(
        {"mac": "00" * 32}).encode())),
    ("hello_bad_name", hello(name="../../etc") + frame(3, b"{}")),
]


@pytest.mark.parametrize("name,data", JUNK, ids=[j[0] for j in JUNK])
def test_junk_is_dropped(cl, name, data):
    expect_dropped(cl, data)
    still_serving(cl, n=2)


def test_many_junk_connections_at_once(cl):
    socks = []
    try:
        for i in range(20):
            s = socket.create_connection(("127.0.0.1", cl.agent_port),
                                         timeout=h.scaled(5))
            s.sendall(b"\xff\xff\xff\xff")
            socks.append(s)
        for s in socks:
            assert_closed(s, 5)
    finally:
        for s in socks:
            s.close()
    still_serving(cl, n=2, start=500)


def test_wrong_secret_never_registers(cl):
    bad_secret = os.path.join(cl.dir, "wrong.secret")
    cl.write_secret(bad_secret, os.urandom(32).hex())
    cfg = cl.write_agent_config("wrong.ini", secret_path=bad_secret,
                                extra_providers={"mallory": None})
    before = h.maildir_count(cl.maildir("a"))
    # The real agent of "a" keeps its place; an impostor of "a" and a new
    # name "mallory" both try with the wrong secret.
    real_a = cl.agents["a"]
    imp = cl.start_agent("a", config=cfg, wait=False, tag="impostor")
    mal = cl.start_agent("mallory", config=cfg, wait=False)
    cl.agents["a"] = real_a

    # Watch until each impostor has been turned away twice (its log says
    # so) or has given up; the verdict is checked at every poll.
    def refused(p):
        if not p.alive():
            return True
        with open(p.log_path, "rb") as f:
            return f.read().lower().count(b"auth") >= 2

    deadline = time.monotonic() + h.scaled(5.0)
    while not (refused(imp) and refused(mal)):
        provs = cl.providers_map()
        assert "mallory" not in provs, provs
        assert provs["a"]["state"] == "up", provs
        assert provs["a"]["pid"] in (None, real_a.pid), provs
        assert time.monotonic() < deadline, \
            "the impostors neither exited nor logged a refusal"
        time.sleep(0.05)
    for p in (imp, mal):
        if not p.alive():
            assert p.p.returncode != 0, p.name
    still_serving(cl, n=4, start=600)
    assert "mallory" not in cl.providers_map()
    # Mail for "a" went to the real agent's maildir, nothing else.
    assert h.maildir_count(cl.maildir("mallory")) == 0
    assert h.maildir_count(cl.maildir("a")) >= before
    imp.kill9()
    mal.kill9()


def test_unknown_name_registers_on_the_fly(cl):
    cfg = cl.write_agent_config("extra.ini", extra_providers={"zed": None})
    cl.start_agent("zed", config=cfg)
    p = cl.provider("zed")
    assert p["state"] == "up", p
    assert p["type"] == "maildir", p
    assert p["remote"] is True, p
    assert p["weight"] == 1, p
    assert p["priority"] == 100, p
    ids = cl.submit_many(12, threads=1, start=700)
    cl.wait_delivered(ids)
    where = h.check_delivery(cl, ids, ["a", "b", "zed"])
    assert len(where.get("zed", ())) > 0, {k: len(v) for k, v in
                                           where.items()}
    # It leaves: it goes down and stays listed.
    cl.agents["zed"].kill9()
    cl.wait_state("zed", "down", timeout=3)
    still_serving(cl, n=2, start=800)
