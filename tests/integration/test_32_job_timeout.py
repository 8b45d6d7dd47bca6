"""Jobs that get no answer.  A fake agent proves the secret and beats but
never answers its JOBs: after job_timeout_s each job is requeued as lost
("no result") and delivered elsewhere, and a late RESULT changes nothing.
A message whose TTL ran out while such an agent held it is still offered
to another up provider when the agent leaves, not failed unseen."""

import datetime
import hashlib
import hmac
import json
import os
import socket
import struct
import threading
import time

import shivneri_harness as h

HELLO, CHALLENGE, AUTH, WELCOME, ERROR, HEARTBEAT, JOB, RESULT = range(1, 9)


class SilentAgent:
    """docs/agent-protocol.md, the least of it: handshake, heartbeats,
    JOBs collected and left unanswered until the test answers one."""

    def __init__(self, port, secret, name):
        self.sock = socket.create_connection(("127.0.0.1", port),
                                             timeout=10)
        self.wlock = threading.Lock()
        self.jlock = threading.Lock()
        self.jobs = []
        self.closed = threading.Event()
        nonce_a = os.urandom(32)
        self.send(HELLO, {"version": 1, "name": name, "type": "maildir",
                          "nonce": nonce_a.hex(), "pid": os.getpid()})
        t, ch = self._recv_json()
        assert t == CHALLENGE, (t, ch)
        nonce_s = bytes.fromhex(ch["nonce"])
        mac = hmac.new(secret, b"shivneri-agent-v1\0" + nonce_s + nonce_a
                       + name.encode(), hashlib.sha256).hexdigest()
        self.send(AUTH, {"mac": mac})
        t, w = self._recv_json()
        assert t == WELCOME, (t, w)
        self.interval = w["heartbeat_interval_ms"] / 1000.0
        self.sock.settimeout(None)
        self.seq = 0
        threading.Thread(target=self._beat, daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()

    def send(self, ftype, obj):
        payload = json.dumps(obj).encode()
        with self.wlock:
            self.sock.sendall(struct.pack(">IB", len(payload) + 1, ftype)
                              + payload)

    def beat(self, health="ok"):
        self.seq += 1
        self.send(HEARTBEAT, {"seq": self.seq, "health": health,
                              "in_flight": len(self.jobs), "load": 0})

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _frame(self):
        (length,) = struct.unpack(">I", self._exact(4))
        body = self._exact(length)
        return body[0], body[1:]

    def _recv_json(self):
        t, payload = self._frame()
        return t, json.loads(payload)

    def _read(self):
        try:
            while True:
                t, payload = self._frame()
                if t == JOB:
                    (jl,) = struct.unpack(">I", payload[:4])
                    with self.jlock:
                        self.jobs.append(json.loads(payload[4:4 + jl]))
        except (EOFError, OSError):
            self.closed.set()

    def _beat(self):
        while not self.closed.wait(self.interval):
            try:
                self.beat()
            except OSError:
                return

    def njobs(self):
        with self.jlock:
            return len(self.jobs)

    def close(self):
        self.closed.set()
        self.sock.close()


def silent(c, name):
    with open(c.secret_path, "rb") as f:
        secret = f.read().rstrip(b"\n")
    agent = SilentAgent(c.agent_port, secret, name)
    c.wait_state(name, "up")
    return agent


def test_jobs_without_result_time_out(make_cluster):
    c = make_cluster(providers=("a", "b"),
                     server_extra={"job_timeout_s": 1,
                                   "breaker_threshold": 100})
    c.start_server()
    fake = silent(c, "a")
    ids = c.submit_many(6)
    h.wait_for(lambda: fake.njobs() >= 6, 10, "6 jobs at the silent agent")
    c.start_agent("b")
    c.wait_delivered(ids, timeout=30)
    for mid in ids:
        m = c.msg(mid)
        assert m["provider"] == "b", m
        lost = [a for a in m["attempts"] if a["outcome"] == "lost"]
        assert lost, m
        assert lost[0]["provider"] == "a", m
        assert lost[0]["detail"] == "no result", m

    # A late answer for a timed-out job is ignored.  The heartbeat that
    # follows it on the same link shows when the server has read it.
    job = fake.jobs[0]
    before = c.msg(job["message_id"])
    fake.send(RESULT, {"job_id": job["job_id"],
                       "message_id": job["message_id"],
                       "outcome": "delivered",
                       "provider_message_id": "late", "detail": ""})
    fake.beat("down")
    c.wait_state("a", "down", timeout=5)
    after = c.msg(job["message_id"])
    assert after["provider"] == "b", after
    assert after["attempts"] == before["attempts"], (before, after)
    assert c.provider("a")["delivered"] == 0
    # ... but said, under the message's id: the provider did send it, and
    # the copy from b is a duplicate (until 2026-11-30 only with -v).
    with open(c.server.log_path, "rb") as f:
        late = [ln for ln in f.read().splitlines()
                if b" late_result " in ln]
    assert len(late) == 1, late
    assert job["message_id"].encode() in late[0], late
    assert b"outcome=delivered duplicate_possible=yes" in late[0], late
    fake.close()


def test_expired_while_held_is_offered_elsewhere(make_cluster):
    c = make_cluster(providers=("a", "b"),
                     server_extra={"message_ttl_s": 1,
                                   "job_timeout_s": 600})
    c.start_server()
    fake = silent(c, "a")
    ids = c.submit_many(3)
    h.wait_for(lambda: fake.njobs() >= 3, 10, "3 jobs at the silent agent")
    c.start_agent("b")

    def ttl_spent():
        return all(time.time() * 1000 - 1000 >
                   parse_ms(c.msg(mid)["created_at"]) for mid in ids)
    h.wait_for(ttl_spent, 10, "the messages' TTL to run out")
    # The agent that held them leaves: they go to b, not to "expired".
    fake.close()
    c.wait_delivered(ids, timeout=30)
    for mid in ids:
        m = c.msg(mid)
        assert m["provider"] == "b", m
        assert [a["outcome"] for a in m["attempts"]] == \
            ["lost", "delivered"], m


def parse_ms(rfc3339):
    t = datetime.datetime.strptime(rfc3339.replace("Z", "+0000"),
                                   "%Y-%m-%dT%H:%M:%S.%f%z")
    return t.timestamp() * 1000
