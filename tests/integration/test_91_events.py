"""GET /v1/events (issue 10): Server-Sent Events of the event hub.

- Messages show queued, attempt and delivered, in order, with their ids; a
  failing provider (an SMTP fake answering 451) shows transient attempts
  with the reply; a killed agent shows provider.down with its reason and
  provider.up when it returns; disable and enable show too.  A live stream
  sees every published event: its seqs are consecutive (none lost).
- A client that reconnects with Last-Event-ID gets exactly the events it
  missed (compared with a client that stayed connected), then the live
  ones, none twice; an id older than the history gets `event: reset`
  first; a malformed id is 400; without the key 401.
- A client that never reads is dropped while the server answers others,
  its RSS bounded, whether its queue passes the cap or just never empties;
  events_max_clients is enforced (503, Retry-After) and a slot frees when
  a client leaves; so is events_max_client_streams, per address (another
  address still gets a stream, a stream closed frees the share); pings come every events_ping_s; open
  streams end at once when the server stops.
"""

import json
import os
import select
import signal
import socket
import sys
import threading
import time

import shivneri_harness as h

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "fakes"))
import smtp_fake  # noqa: E402

KEY = "k-events-test"
AUTH = {"Authorization": "Bearer " + KEY}
MIB = 1024 * 1024


class Sse:
    """One GET /v1/events on a raw socket.  With read=True a thread reads
    and parses the stream into self.items (dicts: id, event, data; or
    comment; or retry); with read=False nothing is ever read after the
    head, like a client that stalls.  src: the loopback address it comes
    from (127.0.0.1 by default)."""

    def __init__(self, port, headers=None, read=True, rcvbuf=None,
                 src=None):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if src:  # another loopback address: another client to the server
            self.s.bind((src, 0))
        self.s.settimeout(h.scaled(10))
        self.s.connect(("127.0.0.1", port))
        hdrs = dict(AUTH)
        hdrs.update(headers or {})
        req = "GET /v1/events HTTP/1.1\r\nHost: t\r\n" + "".join(
            "%s: %s\r\n" % kv for kv in hdrs.items()) + "\r\n"
        self.s.sendall(req.encode())
        self.items = []
        self.closed = False
        self.lock = threading.Lock()
        self.rest = b""
        self.status, self.headers = self._head()
        self.thread = None
        if read and self.status == 200:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _head(self):
        data = b""
        deadline = time.monotonic() + h.scaled(10)
        while b"\r\n\r\n" not in data:
            assert time.monotonic() < deadline, "no head: %r" % data
            d = self.s.recv(4096)
            assert d, "closed before the head: %r" % data
            data += d
        head, self.rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        if status != 200:
            n = int(hdrs.get("content-length", "0"))
            while len(self.rest) < n:
                d = self.s.recv(4096)
                if not d:
                    break
                self.rest += d
        return status, hdrs

    def body_json(self):
        return json.loads(self.rest.decode())

    def _parse(self):
        while b"\n\n" in self.rest:
            block, self.rest = self.rest.split(b"\n\n", 1)
            item = {}
            for ln in block.decode().split("\n"):
                if ln.startswith(":"):
                    item["comment"] = ln[1:].strip()
                    continue
                k, _, v = ln.partition(":")
                v = v[1:] if v.startswith(" ") else v
                assert k in ("id", "event", "data", "retry"), block
                assert k not in item, "field twice in %r" % block
                item[k] = v
            if "data" in item:
                item["data"] = json.loads(item["data"])
            with self.lock:
                self.items.append(item)

    def _run(self):
        self.s.settimeout(None)
        try:
            self._parse()
            while True:
                d = self.s.recv(65536)
                if not d:
                    break
                self.rest += d
                self._parse()
        except OSError:
            pass
        self.closed = True

    def events(self):
        """The events so far (no comments), each {id, event, data}."""
        with self.lock:
            return [i for i in self.items if "event" in i]

    def comments(self):
        with self.lock:
            return [i["comment"] for i in self.items if "comment" in i]

    def wait(self, cond, what, timeout=10):
        """Waits until cond(events) holds; returns the events then."""
        got = []

        def ok():
            got[:] = self.events()
            return cond(got)
        h.wait_for(ok, timeout, what)
        return got

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()
        if self.thread is not None:
            self.thread.join(h.scaled(5))


def keyed_cluster(make_cluster, tmp_path, **kw):
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    keys.chmod(0o600)
    extra = {"api_keys_file": str(keys)}
    extra.update(kw.pop("server_extra", {}))
    c = make_cluster(server_extra=extra, **kw)
    return c


def submit(c, n):
    r = c.post("/v1/messages", h.message(n), headers=AUTH)
    assert r.status == 202, r
    return r.json["id"]


def of(evs, mid=None, provider=None, type_=None):
    return [e["data"] for e in evs
            if (mid is None or e["data"].get("id") == mid) and
            (provider is None or e["data"].get("provider") == provider) and
            (type_ is None or e["event"] == type_)]


def check_consecutive(evs):
    """Each event's id: line is its seq, and a live stream misses none."""
    seqs = [int(e["id"]) for e in evs]
    for e in evs:
        assert e["data"]["seq"] == int(e["id"]), e
        assert e["data"]["type"] == e["event"], e
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def metric(c, name):
    r = c.get("/metrics")
    assert r.status == 200, r
    for ln in r.body.decode().split("\n"):
        if ln.startswith(name + " "):
            return float(ln.split()[1])
    raise AssertionError("no %s in /metrics" % name)


def test_message_and_provider_events(make_cluster, tmp_path):
    fake = smtp_fake.SmtpFake(h.free_port()).start()
    streams = []
    try:
        fake.data_reply = "451 4.3.0 try again later"
        c = make_cluster(providers=("s", "m"))
        c.smtp_provider("s", fake.port)
        c.start_server()
        live = Sse(c.http_port)
        streams.append(live)
        assert live.status == 200, live.status
        assert live.headers["content-type"] == "text/event-stream"
        assert live.headers["connection"] == "close"
        assert "content-length" not in live.headers
        c.start_agent("s", wait=False)
        live.wait(lambda ev: of(ev, provider="s", type_="provider.up"),
                  "provider.up s")

        # A failing provider: transient attempts with its reply.
        first = submit(c, 1)
        evs = live.wait(lambda ev: of(ev, first, type_="message.attempt"),
                        "an attempt at s")
        assert of(evs, first)[0]["type"] == "message.queued", evs
        att = of(evs, first, type_="message.attempt")[0]
        assert att["provider"] == "s" and att["outcome"] == "transient", att
        assert att["attempt"] == 1 and "451" in att["detail"], att

        # Its agent killed with the message in flight: the attempt is
        # lost, the provider down with the reason; back: up.
        fake.data_reply = None
        fake.hang_data = True
        h.wait_for(lambda: c.msg(first)["status"] == "sending" and
                   len(of(live.events(), first,
                          type_="message.attempt")) == 1 and
                   len(fake.messages()) >= 2, 10, "the retry held at s")
        c.agents["s"].kill9()
        evs = live.wait(lambda ev: of(ev, provider="s",
                                      type_="provider.down"), "s down")
        down = of(evs, provider="s", type_="provider.down")[0]
        assert down["state"] == "down" and down["reason"], down
        evs = live.wait(lambda ev: len(of(ev, first,
                                          type_="message.attempt")) == 2,
                        "the lost attempt")
        lost = of(evs, first, type_="message.attempt")[1]
        assert lost["provider"] == "s" and lost["outcome"] == "lost", lost
        assert lost["attempt"] == 2, lost
        fake.hang_data = False
        c.start_agent("m", wait=False)
        live.wait(lambda ev: of(ev, first, type_="message.delivered"),
                  "the first message delivered at m")
        c.start_agent("s", wait=False)
        evs = live.wait(lambda ev: [d for d in of(ev, provider="s")
                                    if d["seq"] > down["seq"] and
                                    d["type"] == "provider.up"],
                        "s up again")

        # Messages in order: queued, attempt, delivered, with their ids.
        ids = [submit(c, i) for i in range(2, 5)]
        evs = live.wait(lambda ev: all(of(ev, m, type_="message.delivered")
                                       for m in ids), "3 delivered")
        for m in ids:
            types = [d["type"] for d in of(evs, m)]
            assert types == ["message.queued", "message.attempt",
                             "message.delivered"], (m, types)
            d = of(evs, m, type_="message.delivered")[0]
            assert d["attempts"] == 1 and d["provider"] in ("s", "m"), d
            a = of(evs, m, type_="message.attempt")[0]
            assert a["outcome"] == "delivered", a

        # The operator's drain.
        assert c.post("/v1/providers/m/disable", headers=AUTH).status == 200
        assert c.post("/v1/providers/m/enable", headers=AUTH).status == 200
        evs = live.wait(lambda ev: of(ev, provider="m",
                                      type_="provider.enabled"), "enabled")
        dis = of(evs, provider="m", type_="provider.disabled")
        en = of(evs, provider="m", type_="provider.enabled")
        assert len(dis) == 1 and dis[0]["state"] == "disabled", dis
        assert len(en) == 1 and en[0]["seq"] > dis[0]["seq"], en
        check_consecutive(evs)
    finally:
        for s in streams:
            s.close()
        fake.stop()


def test_reconnect_replays_exactly_the_missed(make_cluster, tmp_path):
    c = keyed_cluster(make_cluster, tmp_path, providers=("a",),
                      server_extra={"events_history": 40,
                                    "events_ping_s": 1})
    c.start_server()
    ref = Sse(c.http_port)  # stays connected: the reference
    c.start_agent("a", wait=False)
    ref.wait(lambda ev: of(ev, provider="a", type_="provider.up"), "a up")
    # Refusals first: no key, a key in the URL only, malformed ids.
    r = c.get("/v1/events")
    assert r.status == 401, r
    r = c.get("/v1/events?key=" + KEY)
    assert r.status == 401, r
    for bad in ("", "abc", "-1", "+5", "1 2", "0x10", "1.0",
                "18446744073709551616", "1" * 21):
        s = Sse(c.http_port, headers={"Last-Event-ID": bad}, read=False)
        assert s.status == 400, (bad, s.status)
        assert s.body_json()["error"]["code"] == "invalid_field", bad
        s.close()
    r = h.http(c.http_port, "HEAD", "/v1/events", headers=AUTH)
    assert r.status == 200 and r.body == b"", r

    one = Sse(c.http_port)
    try:
        # A ping arrives on an idle stream (events_ping_s = 1).
        h.wait_for(lambda: "ping" in one.comments(), 5, "a ping")
        ids = [submit(c, i) for i in range(3)]
        one.wait(lambda ev: all(of(ev, m, type_="message.delivered")
                                for m in ids), "first 3 delivered")
        last = one.events()[-1]["id"]
        one.close()
        # Missed while away.
        ids2 = [submit(c, i) for i in range(3, 6)]
        ref.wait(lambda ev: all(of(ev, m, type_="message.delivered")
                                for m in ids2), "next 3 delivered")
        back = Sse(c.http_port, headers={"Last-Event-ID": last})
        try:
            want = [e for e in ref.events() if int(e["id"]) > int(last)]
            back.wait(lambda ev: len(ev) >= len(want), "the replay")
            assert back.events() == want, (back.events(), want)
            # Then live, none twice.
            m = submit(c, 6)
            ref.wait(lambda ev: of(ev, m, type_="message.delivered"),
                     "live at ref")
            back.wait(lambda ev: of(ev, m, type_="message.delivered"),
                      "live after the replay")
            tail = [e for e in ref.events() if int(e["id"]) > int(last)]
            assert back.events() == tail
            check_consecutive(ref.events())
        finally:
            back.close()

        # Past the history (40 events): a reset, then what is kept.
        ids3 = [submit(c, i) for i in range(7, 27)]
        ref.wait(lambda ev: all(of(ev, m, type_="message.delivered")
                                for m in ids3), "20 more delivered")
        old = Sse(c.http_port, headers={"Last-Event-ID": last})
        try:
            h.wait_for(lambda: len(old.items) >= 42, 10, "reset and 40")
            got = [i for i in old.items if "comment" not in i]
            assert got[0] == {"retry": "2000"}, got[0]
            assert got[1]["event"] == "reset" and "id" not in got[1], got[1]
            kept = [e for e in ref.events()][-40:]
            assert got[2:42] == kept
        finally:
            old.close()
        # An id of no run of ours (beyond the newest): a reset, then live.
        fut = Sse(c.http_port, headers={"Last-Event-ID": "9" * 19})
        zero = Sse(c.http_port, headers={"Last-Event-ID": "0"})
        try:
            h.wait_for(lambda: [i for i in fut.items
                                if i.get("event") == "reset"], 5, "reset")
            # 0 is older than any: a reset and all 40 kept.
            h.wait_for(lambda: len(zero.items) >= 42, 10, "0's replay")
            got = [i for i in zero.items if "comment" not in i]
            assert got[1]["event"] == "reset", got[1]
            assert got[2:42] == ref.events()[-40:]
            m = submit(c, 27)
            for s in (fut, zero):
                s.wait(lambda ev: of(ev, m, type_="message.delivered"),
                       "live after a reset")
            assert fut.events()[1:] == ref.events()[-3:], fut.events()
        finally:
            fut.close()
            zero.close()
    finally:
        ref.close()
        one.close()


def toggle(c, n):
    """n provider events: disable, enable, ... (n even)."""
    for i in range(n):
        act = "disable" if i % 2 == 0 else "enable"
        r = c.post("/v1/providers/a/" + act, headers=AUTH)
        assert r.status == 200, r


def test_slow_client_dropped_and_max_clients(make_cluster, tmp_path):
    c = make_cluster(providers=("a",),
                     server_extra={"events_max_clients": 3,
                                   "events_client_buffer_bytes": 16384,
                                   "events_ping_s": 1})
    c.start_server()
    c.start_agent("a")
    fast = Sse(c.http_port)
    slow = Sse(c.http_port, read=False, rcvbuf=2048)
    third = Sse(c.http_port)
    try:
        assert metric(c, "shivneri_event_streams") == 3
        over = Sse(c.http_port, read=False)
        assert over.status == 503, over.status
        assert over.headers.get("retry-after") == "5", over.headers
        assert over.body_json()["error"]["code"] == "unavailable"
        over.close()
        # The third leaves: its slot is free again.
        third.close()
        h.wait_for(lambda: metric(c, "shivneri_event_streams") == 2, 5,
                   "the gauge back to 2")
        third = Sse(c.http_port)
        assert third.status == 200
        base_rss = h.rss(c.server.pid)
        # Events until the slow one is dropped: it never reads.
        sent = 0
        deadline = time.monotonic() + h.scaled(20)
        while metric(c, "shivneri_event_streams") > 2:
            assert time.monotonic() < deadline, "the slow client stays"
            assert sent < 4000, "the slow client stays"
            toggle(c, 50)
            sent += 50
            assert c.get("/healthz").status == 200
        grew = h.rss(c.server.pid) - base_rss
        print("events sent %d, server RSS grew %d KiB" % (sent, grew // 1024))
        assert grew < 32 * MIB
        # It was closed (after what its buffers held), logged once.
        h.wait_for(lambda: slow_closed(slow), 10, "the slow client's EOF")
        log = open(c.server.log_path, errors="replace").read()
        assert log.count("events client dropped") == 1, log[-2000:]
        # The readers missed nothing.
        toggle(c, 2)
        sent += 2
        for s in (fast, third):
            evs = s.wait(lambda ev: len(of(ev, provider="a")) >= 1,
                         "events at a reader")
            check_consecutive(evs)
        h.wait_for(lambda: len(of(fast.events(), provider="a",
                                  type_="provider.enabled")) == sent // 2,
                   10, "every toggle at the fast reader")
    finally:
        fast.close()
        slow.close()
        third.close()


def test_max_client_streams(make_cluster):
    """One address holds its share of the streams and no more: its next
    one is 503 (logged once for the two refusals), another address still
    gets one, and a stream it closes frees its share."""
    c = make_cluster(providers=("a",),
                     server_extra={"events_max_clients": 8,
                                   "events_max_client_streams": 2})
    c.start_server()
    c.start_agent("a")
    c.wait_state("a", "up")
    mine = [Sse(c.http_port), Sse(c.http_port)]
    other = None
    try:
        assert [s.status for s in mine] == [200, 200]
        for _ in range(2):
            over = Sse(c.http_port, read=False)
            assert over.status == 503, over.status
            assert over.headers.get("retry-after") == "5", over.headers
            err = over.body_json()["error"]
            assert err["code"] == "unavailable", err
            assert "from this address" in err["message"], err
            over.close()
        assert metric(c, "shivneri_event_streams") == 2
        other = Sse(c.http_port, src="127.0.0.2")
        assert other.status == 200, other.status
        assert metric(c, "shivneri_event_streams") == 3
        log = open(c.server.log_path, errors="replace").read()
        assert log.count("too many streams from one client") == 1, \
            log[-2000:]
        # One of the address's streams ends: its share has room again.
        mine.pop().close()
        h.wait_for(lambda: metric(c, "shivneri_event_streams") == 2, 5,
                   "the gauge back to 2")
        mine.append(Sse(c.http_port))
        assert mine[-1].status == 200, mine[-1].status
        # The streams that stayed still get what is published.
        toggle(c, 2)
        for s in mine + [other]:
            s.wait(lambda ev: of(ev, provider="a",
                                 type_="provider.disabled") and
                   of(ev, provider="a", type_="provider.enabled"),
                   "the toggles at every stream")
    finally:
        for s in mine + [other]:
            if s is not None:
                s.close()


def test_stalled_client_dropped(make_cluster):
    """A queue under the cap that never empties (a client that stopped
    reading, with little traffic) is dropped after 4 ping periods."""
    c = make_cluster(providers=("a",), server_extra={"events_ping_s": 1})
    c.start_server()
    c.start_agent("a")
    fast = Sse(c.http_port)
    slow = Sse(c.http_port, read=False, rcvbuf=2048)
    try:
        # Past what the kernel buffers hold (about 70 KB), far below the
        # 1 MiB cap: some of it waits in the server's queue.
        toggle(c, 600)
        h.wait_for(lambda: metric(c, "shivneri_event_streams") == 1, 10,
                   "the stalled client dropped")
        log = open(c.server.log_path, errors="replace").read()
        assert "events client dropped" in log and "reason=stalled" in log
        fast.wait(lambda ev: len(of(ev, provider="a",
                                    type_="provider.enabled")) == 300,
                  "every toggle at the reader")
        check_consecutive(fast.events())
    finally:
        fast.close()
        slow.close()


def test_replay_is_paced_under_the_cap(make_cluster):
    """A replay of far more than events_client_buffer_bytes arrives whole:
    it is queued a share at a time as the client reads, never past the
    cap (which would drop the client)."""
    c = make_cluster(providers=("a",),
                     server_extra={"events_history": 2000,
                                   "events_client_buffer_bytes": 16384})
    c.start_server()
    c.start_agent("a")
    ref = Sse(c.http_port)
    try:
        toggle(c, 2)
        first = ref.wait(lambda ev: len(ev) >= 1, "a first event")[0]["id"]
        toggle(c, 600)
        ref.wait(lambda ev: len(ev) >= 602, "602 events")
        want = [e for e in ref.events() if int(e["id"]) > int(first)]
        assert len(want) == 601 and sum(len(json.dumps(e)) for e in want) \
            > 4 * 16384
        back = Sse(c.http_port, headers={"Last-Event-ID": first})
        try:
            back.wait(lambda ev: len(ev) >= 601, "the whole replay")
            assert back.events() == want
            assert not back.closed
            log = open(c.server.log_path, errors="replace").read()
            assert "events client dropped" not in log
        finally:
            back.close()
    finally:
        ref.close()


def slow_closed(s):
    """Reads what is left; True once the server's close arrives."""
    s.s.setblocking(False)
    try:
        while True:
            r, _, _ = select.select([s.s], [], [], 0)
            if not r:
                return False
            d = s.s.recv(65536)
            if not d:
                return True
    except ConnectionResetError:
        return True
    except BlockingIOError:
        return False


def test_streams_end_when_the_server_stops(make_cluster, tmp_path):
    c = make_cluster(providers=("a",), spawn=True)
    c.start_server()
    c.wait_state("a", "up")
    s = Sse(c.http_port)
    try:
        t0 = time.monotonic()
        c.server.signal(signal.SIGTERM)
        h.wait_for(lambda: s.closed, 10, "the stream's end")
        code = c.server.wait_exit(10)
        assert code == 0, code
        assert time.monotonic() - t0 < h.scaled(8)
    finally:
        s.close()
