"""Outcome classes end to end, with a hand-written agent (the protocol
code is that of test_33_hostile_agents.py).

The agent "hand" answers its first job throttled with retry_after_ms: the
provider is shown paused with the reason and paused_until, the message is
delivered by the maildir agent "a" and the throttled try did not count,
and "hand" comes back by itself.  Then it answers account and beats
"down" until its "probe" passes: the provider is down with the reason, the
message moves on (that attempt counts), and a heartbeat saying ok again
brings it back."""

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


class ClassAgent:
    """Registers, beats with self.health, and answers every JOB with
    self.answer(job) -> RESULT fields (outcome, detail, ...)."""

    def __init__(self, c, name):
        with open(c.secret_path, "rb") as f:
            secret = f.read().rstrip(b"\n")
        self.sock = socket.create_connection(("127.0.0.1", c.agent_port),
                                             timeout=h.scaled(10))
        self.wlock = threading.Lock()
        self.closed = threading.Event()
        self.health = "ok"
        self.answers = []  # the outcomes to give, in order; then delivered
        self.jobs = []
        nonce_a = os.urandom(32)
        self.send(HELLO, {"version": 1, "name": name, "type": "maildir",
                          "nonce": nonce_a.hex(), "pid": 4242})
        t, ch = self.recv_json()
        assert t == CHALLENGE, (t, ch)
        # A server of this build says which outcomes it understands:
        # revision 2's at least (3 adds too_large, not used here).
        assert ch.get("revision", 1) >= 2, ch
        nonce_s = bytes.fromhex(ch["nonce"])
        mac = hmac.new(secret, b"shivneri-agent-v1\0" + nonce_s + nonce_a
                       + name.encode(), hashlib.sha256).hexdigest()
        self.send(AUTH, {"mac": mac})
        t, self.welcome = self.recv_json()
        assert t == WELCOME, (t, self.welcome)
        self.sock.settimeout(None)
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._beat, daemon=True).start()

    def send(self, ftype, obj, health=None):
        """health: set under the write lock with the frame, so that no
        beat of the other thread slips between the two."""
        with self.wlock:
            if callable(obj):
                obj = obj()
            payload = json.dumps(obj).encode()
            self.sock.sendall(struct.pack(">IB", len(payload) + 1, ftype)
                              + payload)
            if health is not None:
                self.health = health

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

    def _read(self):
        try:
            while True:
                t, payload = self.frame()
                if t != JOB:
                    continue
                (jl,) = struct.unpack(">I", payload[:4])
                job = json.loads(payload[4:4 + jl])
                self.jobs.append(job)
                res = {"job_id": job["job_id"],
                       "message_id": job["message_id"],
                       "outcome": "delivered",
                       "provider_message_id": "hand-%d" % job["job_id"]}
                if self.answers:
                    res.update(self.answers.pop(0))
                # As the reference agent after an account answer: down
                # until its probe passes, from the beat after the RESULT.
                self.send(RESULT, res, health="down"
                          if res["outcome"] == "account" else None)
        except (EOFError, OSError):
            self.closed.set()

    def _beat(self):
        interval = self.welcome["heartbeat_interval_ms"] / 1000.0
        seq = 0
        while not self.closed.wait(interval):
            seq += 1
            try:
                self.send(HEARTBEAT, lambda: {
                    "seq": seq, "health": self.health, "in_flight": 0,
                    "load": 0})
            except OSError:
                return

    def close(self):
        self.closed.set()
        self.sock.close()


def attempts_of(c, mid):
    return [(a["provider"], a["outcome"], a["detail"])
            for a in c.msg(mid)["attempts"]]


def test_throttled_then_account(make_cluster):
    c = make_cluster(providers=("a", "hand"))
    c.start_server()
    hand = ClassAgent(c, "hand")
    try:
        c.wait_state("hand", "up")

        # throttled: paused until Retry-After, the try is free.
        hand.answers.append({"outcome": "throttled",
                             "detail": "429 Too Many Requests",
                             "retry_after_ms": int(h.scaled(2) * 1000)})
        m1 = c.submit()
        p = c.wait_state("hand", "paused", timeout=h.scaled(5))
        assert p["reason"] == "throttled: 429 Too Many Requests", p
        assert p["paused_until"] is not None, p
        assert p["throttled"] == 1, p
        c.start_agent("a")
        c.wait_delivered([m1], timeout=h.scaled(10))
        m = c.msg(m1)
        assert m["provider"] == "a", m
        assert attempts_of(c, m1) == [
            ("hand", "throttled", "429 Too Many Requests"),
            ("a", "delivered", None)], m
        assert m["attempt_count"] == 1, m
        # The pause ends by itself.
        p = c.wait_state("hand", "up", timeout=h.scaled(5))
        assert p["paused_until"] is None and p["reason"] is None, p

        # account: down with the reason until the agent says ok again.
        hand.answers.append({"outcome": "account",
                             "detail": "401 invalid API key"})
        njobs = len(hand.jobs)
        ids = []
        deadline = time.monotonic() + h.scaled(10)
        while len(hand.jobs) == njobs:
            assert time.monotonic() < deadline, "hand got no job"
            ids.append(c.submit())
            time.sleep(0.05)
        p = c.wait_state("hand", "down", timeout=h.scaled(5))
        assert p["reason"] == "account: 401 invalid API key", p
        c.wait_delivered(ids, timeout=h.scaled(10))
        faulted = [i for i in ids
                   if ("hand", "account", "401 invalid API key")
                   in attempts_of(c, i)]
        assert len(faulted) == 1, [attempts_of(c, i) for i in ids]
        m = c.msg(faulted[0])
        assert m["provider"] == "a" and m["attempt_count"] == 2, m
        # Heartbeats saying down keep it down; the probe passes: back.
        time.sleep(h.scaled(0.5))
        assert c.provider("hand")["state"] == "down"
        hand.health = "ok"
        p = c.wait_state("hand", "up", timeout=h.scaled(5))
        assert p["reason"] is None, p
        # And it takes messages again.
        njobs = len(hand.jobs)
        more = [c.submit() for _ in range(4)]
        c.wait_delivered(more, timeout=h.scaled(10))
        assert len(hand.jobs) > njobs
    finally:
        hand.close()


def test_cli_shows_pause(make_cluster):
    """`shivneri providers` prints the state, paused_until and reason."""
    import subprocess
    c = make_cluster(providers=("hand",))
    c.start_server()
    hand = ClassAgent(c, "hand")
    try:
        c.wait_state("hand", "up")
        hand.answers.append({"outcome": "throttled", "detail": "slow down",
                             "retry_after_ms": int(h.scaled(5) * 1000)})
        c.submit()
        p = c.wait_state("hand", "paused", timeout=h.scaled(5))
        out = subprocess.run(
            [h.BIN, "providers", "--url",
             "http://127.0.0.1:%d" % c.http_port],
            capture_output=True, text=True, timeout=h.scaled(10))
        assert out.returncode == 0, out.stderr
        assert "PAUSED_UNTIL" in out.stdout and "REASON" in out.stdout
        line = [ln for ln in out.stdout.splitlines()
                if ln.startswith("hand ")]
        assert line, out.stdout
        assert "paused" in line[0], line
        assert p["paused_until"] in line[0], line
        assert "throttled: slow down" in line[0], line
    finally:
        hand.close()
