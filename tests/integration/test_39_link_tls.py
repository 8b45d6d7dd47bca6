"""The agent link over TLS (docs/agent-protocol.md, "Transport").

An agent is started by hand behind a recording TCP proxy that plays the
attacker on the path: it keeps every byte both ways, and can flip a byte
of what the server sends or withhold it and inject a forged RESULT
`delivered` instead.  With `agent_tls = required` the proxy must see none
of the message's words, and any change it makes must end the link: the
message is then delivered once for real, its lost attempt on record,
instead of being marked delivered on a forged word or sent altered.
The agent config is the server's file (one agent_tls for both ends), so
loopback still runs TLS.
"""

import json
import os
import select
import socket
import struct
import subprocess
import threading
import time

import pytest

import shivneri_harness as h

HELLO, ERROR, JOB, RESULT = 1, 5, 7, 8
SECRET_WORDS = (b"Zebra-subject-4711", b"quokka-body-9931",
                b"narwhal-rcpt@example.net")


class Proxy:
    """127.0.0.1:port -> the agent port, recording both ways.

    arm("flip") flips one byte of the next chunk the server sends on the
    current connection; arm("inject") withholds that chunk (and what the
    server sends after it on that connection) and sends the server a
    forged RESULT delivered for the job instead.  Either fires once.
    """

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.port = self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.c2s = bytearray()
        self.s2c = bytearray()
        self.conns = 0
        self.action = None
        self.fired = threading.Event()
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def arm(self, action):
        with self.lock:
            self.action = action

    def recorded(self):
        with self.lock:
            return bytes(self.c2s) + bytes(self.s2c)

    @staticmethod
    def forged_result(chunk):
        """A RESULT delivered for the JOB in chunk when it can be read (a
        plaintext link: the forgery is exact), else a guess (job 1)."""
        job_id, message_id = 1, "0"
        if len(chunk) >= 9 and chunk[4] == JOB:
            (jlen,) = struct.unpack(">I", chunk[5:9])
            try:
                job = json.loads(chunk[9:9 + jlen])
                job_id, message_id = job["job_id"], job["message_id"]
            except (ValueError, KeyError):
                pass
        body = json.dumps({"job_id": job_id, "message_id": message_id,
                           "outcome": "delivered",
                           "provider_message_id": "forged"}).encode()
        return struct.pack(">IB", len(body) + 1, RESULT) + body

    def _from_server(self, pair, data):
        """What to forward to the agent (and maybe inject)."""
        with self.lock:
            self.s2c += data
            action = self.action if pair["id"] == self.conns else None
            if pair["cut"]:
                return b""
            if action is None:
                return data
            self.action = None
        if action == "flip":
            i = len(data) // 2
            data = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
        else:
            pair["server"].sendall(self.forged_result(data))
            pair["cut"] = True
            data = b""
        self.fired.set()
        return data

    def _run(self):
        pairs = []
        deadline = time.monotonic() + h.scaled(120)
        while not self.stop_ev.is_set() and time.monotonic() < deadline:
            socks = [self.lsock]
            for p in pairs:
                socks += [p["agent"], p["server"]]
            r, _, _ = select.select(socks, [], [], 0.05)
            for s in r:
                if s is self.lsock:
                    a, _ = self.lsock.accept()
                    srv = socket.create_connection(("127.0.0.1",
                                                    self.target))
                    with self.lock:
                        self.conns += 1
                        pairs.append({"agent": a, "server": srv,
                                      "id": self.conns, "cut": False})
                    continue
                p = next((p for p in pairs
                          if s in (p["agent"], p["server"])), None)
                if p is None:
                    continue  # its pair closed earlier in this turn
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    p["agent"].close()
                    p["server"].close()
                    pairs.remove(p)
                    continue
                try:
                    if s is p["agent"]:
                        with self.lock:
                            self.c2s += data
                        p["server"].sendall(data)
                    else:
                        out = self._from_server(p, data)
                        if out:
                            p["agent"].sendall(out)
                except OSError:
                    pass
        for p in pairs:
            p["agent"].close()
            p["server"].close()

    def stop(self):
        self.stop_ev.set()
        self.t.join(timeout=5)
        self.lsock.close()


def log_has(path, needle):
    with open(path, "rb") as f:
        return needle in f.read()


def start_direct(make_cluster, tls="required"):
    """A cluster with agent_tls = tls (None: the default), no proxy."""
    extra = {"agent_tls": tls} if tls else {}
    c = make_cluster(providers=("a",), server_extra=extra)
    c.start_server()
    return c


def start(make_cluster, tls="required"):
    c = start_direct(make_cluster, tls)
    return c, Proxy(c.agent_port)


def agent_via(c, proxy, config=None):
    return c._proc("agent-a-proxy",
                   [h.BIN, "agent", "-c", config or c.config_path, "-p", "a",
                    "--server", "127.0.0.1:%d" % proxy.port])


def wait_registered(agent):
    h.wait_for(lambda: log_has(agent.log_path, b"registered provider=a"), 10,
               "the agent to register")


def secret_message():
    return h.message(subject=SECRET_WORDS[0].decode(),
                     text="dear %s\n" % SECRET_WORDS[1].decode(),
                     to=[SECRET_WORDS[2].decode()])


def maildir_bodies(c):
    d = os.path.join(c.maildir("a"), "new")
    out = []
    for name in os.listdir(d):
        with open(os.path.join(d, name), "rb") as f:
            out.append(f.read())
    return out


def link_shown_everywhere(c, tls):
    """What the API says of the link, /metrics and `shivneri providers`
    say too (a 0/1 gauge; a LINK column)."""
    r = c.get("/metrics")
    assert r.status == 200, r
    want = 'shivneri_provider_link_tls{provider="a"} %d' % (1 if tls else 0)
    assert want in r.body.decode().split("\n"), r.body.decode()
    out = subprocess.run([h.BIN, "providers", "--url",
                          "http://127.0.0.1:%d" % c.http_port],
                         capture_output=True, timeout=h.scaled(30))
    assert out.returncode == 0, out
    lines = out.stdout.decode().splitlines()
    row = [ln for ln in lines[1:] if ln.split()[:1] == ["a"]][0]
    # A left-aligned column starts where its heading does.
    at = lines[0].index(" LINK ") + 1
    assert row[at:].split()[0] == ("tls" if tls else "plain"), lines


def record_one_message(make_cluster, tls):
    """One message sent through the recording proxy on a link with
    agent_tls = tls; the cluster, the agent and what the proxy saw."""
    c, proxy = start(make_cluster, tls=tls)
    try:
        agent = agent_via(c, proxy)
        c.wait_state("a", "up")
        assert c.provider("a")["link_tls"] is (tls == "required")
        link_shown_everywhere(c, tls == "required")
        mid = c.submit(secret_message())
        c.wait_delivered([mid])
        recorded = proxy.recorded()
    finally:
        proxy.stop()
    return c, agent, recorded


def test_tls_link_hides_the_message(make_cluster):
    c, agent, recorded = record_one_message(make_cluster, "required")
    bodies = maildir_bodies(c)
    assert len(bodies) == 1
    for w in SECRET_WORDS:
        assert w in bodies[0], w
        assert w not in recorded, w
    # The ClientHello came first, so the server took TLS.
    assert recorded[:1] == b"\x16"
    assert log_has(c.server.log_path, b"linked provider=a peer=127.0.0.1:")
    assert log_has(c.server.log_path, b"tls=yes")
    assert log_has(agent.log_path, b"registered provider=a")


def test_plaintext_on_loopback_shows_the_message(make_cluster):
    """The control of the test above: the recorder sees a message that
    crosses in clear, which is what agent_tls = auto (the default)
    leaves a loopback link (a spawned agent's, benchmarked)."""
    _, _, recorded = record_one_message(make_cluster, None)
    for w in SECRET_WORDS:
        assert w in recorded, w


@pytest.mark.parametrize("action", ["flip", "inject"])
def test_tampered_link_ends(make_cluster, action):
    """A flipped byte, or a withheld JOB answered by a forged RESULT."""
    c, proxy = start(make_cluster)
    try:
        agent = agent_via(c, proxy)
        c.wait_state("a", "up")
        # WELCOME has reached the agent: what the server sends next on
        # this connection is the JOB.
        wait_registered(agent)
        proxy.arm(action)
        mid = c.submit(secret_message())
        h.wait_for(proxy.fired.is_set, 10, "the proxy to tamper")
        c.wait_delivered([mid], timeout=20)
    finally:
        proxy.stop()
    m = c.msg(mid)
    outcomes = [a["outcome"] for a in m["attempts"]]
    assert "lost" in outcomes, m
    assert outcomes[-1] == "delivered", m
    assert all(a.get("provider_message_id") != "forged"
               for a in m["attempts"]), m
    bodies = maildir_bodies(c)
    # Sent for real, unaltered: the maildir holds the words as written.
    assert bodies, "delivered with nothing in the maildir"
    for b in bodies:
        for w in SECRET_WORDS[:2]:
            assert w in b, (w, b[-200:])
    assert log_has(c.server.log_path, b"unlinked provider=a")


def test_plaintext_agent_refused_where_tls_required(make_cluster):
    c = start_direct(make_cluster)
    agent = c.start_agent("a", config=agent_config(c, "plain.ini", "off"),
                          wait=False)
    h.wait_for(lambda: log_has(agent.log_path, b"code=tls_required"), 10,
               "the agent to be refused")
    assert log_has(c.server.log_path, b"code=tls_required")
    assert c.provider("a")["state"] != "up"
    # Many refusals, one line per 10 s.
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", c.agent_port),
                                     timeout=h.scaled(5))
        hello = json.dumps({"version": 1, "name": "a", "type": "maildir",
                            "nonce": "00" * 32, "pid": 1}).encode()
        s.sendall(struct.pack(">IB", len(hello) + 1, HELLO) + hello)
        f = s.makefile("rb")
        (n,) = struct.unpack(">I", f.read(4))
        body = f.read(n)
        assert body[0] == ERROR and b"tls_required" in body, body
        f.close()
        s.close()
    with open(c.server.log_path, "rb") as f:
        lines = [ln for ln in f.read().splitlines()
                 if b"code=tls_required" in ln]
    assert len(lines) == 1, lines


def test_wrong_secret_fails_the_tls_handshake(make_cluster):
    c = start_direct(make_cluster)
    wrong = os.path.join(c.dir, "wrong.secret")
    c.write_secret(wrong, os.urandom(32).hex())
    cfg = c.write_agent_config("wrong.ini", secret_path=wrong)
    agent = c.start_agent("a", config=cfg, wait=False)
    h.wait_for(lambda: log_has(agent.log_path, b"tls_failed provider=a"), 10,
               "the agent's TLS handshake to fail")
    h.wait_for(lambda: log_has(c.server.log_path, b"tls_failed peer="),
               10, "the server's TLS handshake to fail")
    # It never got as far as the HMAC handshake.
    assert not log_has(c.server.log_path, b"auth_failed")
    assert not log_has(agent.log_path, b"connected provider=a")
    assert c.provider("a")["state"] != "up"


def agent_config(c, name, mode):
    """The server's file for an agent, with agent_tls = mode."""
    path = c.write_agent_config(name)
    with open(path) as f:
        lines = [ln for ln in f.read().splitlines()
                 if not ln.startswith("agent_tls")]
    lines.insert(lines.index("[server]") + 1, "agent_tls = %s" % mode)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def test_auto_server_takes_tls_on_loopback(make_cluster):
    c = start_direct(make_cluster, tls="auto")
    agent = c.start_agent("a", config=agent_config(c, "tls.ini", "required"))
    mid = c.submit()
    c.wait_delivered([mid])
    assert log_has(c.server.log_path, b"linked provider=a peer=127.0.0.1:")
    assert log_has(c.server.log_path, b"tls=yes")
    assert log_has(agent.log_path, b"tls=yes")


def test_off_server_closes_a_tls_agent(make_cluster):
    c = start_direct(make_cluster, tls="off")
    agent = c.start_agent("a", config=agent_config(c, "tls.ini", "required"),
                          wait=False)
    h.wait_for(lambda: log_has(c.server.log_path, b"code=tls_off"), 10,
               "the server to close the TLS agent")
    h.wait_for(lambda: log_has(agent.log_path, b"tls_failed provider=a"),
               10, "the agent to see its TLS handshake fail")
    assert c.provider("a")["state"] != "up"
