"""Agents that prove the secret but lie or flood.

A hand-written agent (docs/agent-protocol.md) registers names the file
does not know past max_dynamic_providers, claims a huge max_in_flight,
reports any pid, holds jobs without answering, and beats far faster than
heartbeat_interval_ms.  The server refuses the extra names (a known one
may come back), clamps the claim, shows the pid as reported, holds at most
max_in_flight_bytes of messages for one provider, and drops the flooding
link, each with a bounded number of log lines."""

import hashlib
import hmac
import json
import os
import socket
import struct
import threading

import shivneri_harness as h

HELLO, CHALLENGE, AUTH, WELCOME, ERROR, HEARTBEAT, JOB, RESULT = range(1, 9)


class HandAgent:
    """The handshake, then frames on demand.  self.welcome holds WELCOME,
    or self.error the ERROR the server answered instead."""

    def __init__(self, c, name, **hello):
        with open(c.secret_path, "rb") as f:
            secret = f.read().rstrip(b"\n")
        self.sock = socket.create_connection(("127.0.0.1", c.agent_port),
                                             timeout=h.scaled(10))
        self.wlock = threading.Lock()
        self.jobs = []
        self.jlock = threading.Lock()
        self.closed = threading.Event()
        self.welcome = self.error = None
        nonce_a = os.urandom(32)
        msg = {"version": 1, "name": name, "type": "maildir",
               "nonce": nonce_a.hex(), "pid": 4242}
        msg.update(hello)
        self.send(HELLO, msg)
        t, ch = self.recv_json()
        assert t == CHALLENGE, (t, ch)
        nonce_s = bytes.fromhex(ch["nonce"])
        mac = hmac.new(secret, b"shivneri-agent-v1\0" + nonce_s + nonce_a
                       + name.encode(), hashlib.sha256).hexdigest()
        self.send(AUTH, {"mac": mac})
        t, obj = self.recv_json()
        if t == WELCOME:
            self.welcome = obj
        else:
            assert t == ERROR, (t, obj)
            self.error = obj

    def send(self, ftype, obj):
        payload = json.dumps(obj).encode()
        with self.wlock:
            self.sock.sendall(struct.pack(">IB", len(payload) + 1, ftype)
                              + payload)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def frame(self):
        (length,) = struct.unpack(">I", self._exact(4))
        body = self._exact(length)
        return body[0], body[1:]

    def recv_json(self):
        t, payload = self.frame()
        return t, json.loads(payload)

    def collect_jobs(self):
        """Reads JOBs in a thread and keeps them unanswered; beats once
        per interval so the provider stays up."""
        interval = self.welcome["heartbeat_interval_ms"] / 1000.0

        def read():
            try:
                while True:
                    t, payload = self.frame()
                    if t == JOB:
                        (jl,) = struct.unpack(">I", payload[:4])
                        with self.jlock:
                            self.jobs.append(json.loads(payload[4:4 + jl]))
            except (EOFError, OSError):
                self.closed.set()

        def beat():
            seq = 0
            while not self.closed.wait(interval):
                seq += 1
                try:
                    self.send(HEARTBEAT, {"seq": seq, "health": "ok",
                                          "in_flight": 0, "load": 0})
                except OSError:
                    return
        self.sock.settimeout(None)
        threading.Thread(target=read, daemon=True).start()
        threading.Thread(target=beat, daemon=True).start()

    def njobs(self):
        with self.jlock:
            return len(self.jobs)

    def close(self):
        self.closed.set()
        self.sock.close()


def log_lines(c, word):
    with open(c.server.log_path, "rb") as f:
        return [ln for ln in f.read().splitlines() if word in ln]


def test_dynamic_providers_capped_and_clamped(make_cluster):
    c = make_cluster(providers=("a",),
                     server_extra={"max_dynamic_providers": 2})
    c.start_server()
    one = HandAgent(c, "dyn1", max_in_flight=1000000, weight=5)
    assert one.welcome, one.error
    two = HandAgent(c, "dyn2")
    assert two.welcome, two.error
    one.collect_jobs()
    c.wait_state("dyn1", "up")
    p = c.provider("dyn1")
    # The claim is clamped; the pid is shown as the agent reported it.
    assert p["max_in_flight"] == 32, p
    assert p["remote"] is True and p["pid"] == 4242, p
    # A third new name is refused, again and again, in few log lines.
    for i in range(20):
        extra = HandAgent(c, "extra%d" % i)
        assert extra.welcome is None, "extra%d got in" % i
        assert extra.error["code"] == "too_many_providers", extra.error
        extra.close()
    assert "extra0" not in c.providers_map()
    lines = log_lines(c, b" code=too_many_providers")
    assert 1 <= len(lines) <= 2, lines
    # A dynamic name seen before may come back.
    two.close()
    c.wait_state("dyn2", "down")
    again = HandAgent(c, "dyn2")
    assert again.welcome, again.error
    again.close()
    one.close()


def test_in_flight_bytes_capped(make_cluster):
    c = make_cluster(providers=("a", "b"),
                     server_extra={"max_message_bytes": 65536,
                                   "max_in_flight_bytes": 65536,
                                   "job_timeout_s": 600})
    c.start_server()
    fake = HandAgent(c, "a")
    assert fake.welcome, fake.error
    fake.collect_jobs()
    c.wait_state("a", "up")
    # About 25 KB each: after the third, a holds more than 64 KiB and
    # takes no more (max_in_flight is 8), so b gets the other three.
    ids = [c.submit(h.message(i, text="x" * 25000 + "\n"))
           for i in range(6)]
    h.wait_for(lambda: fake.njobs() >= 3, 10, "3 jobs at the fake agent")
    c.start_agent("b")
    h.wait_for(lambda: c.provider("b")["delivered"] == 3, 15,
               "b to deliver the 3 messages a cannot hold")
    assert fake.njobs() == 3, fake.jobs
    assert c.provider("a")["in_flight"] == 3, c.provider("a")
    held = {j["message_id"] for j in fake.jobs}
    assert held < set(ids), (held, ids)
    fake.close()
    c.wait_delivered(ids, timeout=30)


def test_heartbeat_flood_drops_the_link(make_cluster):
    c = make_cluster(providers=("a",))
    c.start_server()
    fake = HandAgent(c, "a")
    assert fake.welcome, fake.error
    # Far faster than one per heartbeat_interval_ms (200 ms).
    for seq in range(1, 201):
        try:
            fake.send(HEARTBEAT, {"seq": seq, "health": "ok",
                                  "in_flight": 0, "load": 0})
        except OSError:
            break
    fake.sock.settimeout(h.scaled(5))
    got = None
    try:
        while got is None:
            t, payload = fake.frame()
            if t == ERROR:
                got = json.loads(payload)
    except (EOFError, OSError):
        pass
    fake.close()
    assert got is not None and got["code"] == "heartbeat_flood", got
    c.wait_state("a", "down")
    # The name is refused for a while (10 intervals, at least 1 s), so a
    # reconnect loop costs no state changes; few lines say it all.
    for _ in range(5):
        again = HandAgent(c, "a")
        assert again.welcome is None, "reconnected at once"
        assert again.error["code"] == "heartbeat_flood", again.error
        again.close()
    lines = [ln for ln in log_lines(c, b"heartbeat_flood")
             if b" heartbeat_flood " in ln or b"code=heartbeat_flood" in ln]
    assert len(lines) == 1, lines
    # Then a well-behaved agent of that name is welcome.
    c.start_agent("a")
