"""The store attacked as a failing disk, a dying process and a careless
operator would: whatever happens, no accepted message is lost and every
possible duplicate is on record.

One data folder, one server: SQLite lets two processes share a WAL
database, so a second `serve` started on a folder in use used to come up
healthy, recover the first one's `sending` messages as lost and dispatch
the same queue: a message sent by both servers with nothing on record.
The store now takes a lock on the folder at open; the second server
refuses to start, says why, and changes nothing.

A disk that fills in the middle of the flow (a file size limit on the
server, raised again while it runs): every submission answered 202 is
delivered after a kill -9 and a restart, none answered 503 is, and a
message sent twice has a lost attempt on record.

A clock stepped back does not hold backed-off messages longer than
retry_max_ms."""

import os
import resource
import signal
import sqlite3
import subprocess
import threading
import time

import shivneri_harness as h


def _run_to_exit(config_path, err_path, timeout=10):
    """Runs serve and waits for its exit; returns (exit status, stderr
    text).  A server still running at the deadline is killed and the
    wait fails: that one started where it should have refused."""
    with open(err_path, "wb") as err:
        p = subprocess.Popen([h.BIN, "serve", "-c", config_path],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=err,
                             start_new_session=True)
    try:
        h.wait_for(lambda: p.poll() is not None, timeout,
                   "the second server to refuse and exit")
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=h.scaled(10))
    with open(err_path, encoding="utf-8", errors="replace") as f:
        return p.returncode, f.read()


def test_second_server_on_one_store_refused(make_cluster, tmp_path):
    c = make_cluster(providers=("a",))
    c.start_server()
    mid = c.submit()
    first_port = c.http_port
    # The same data folder, other ports: only the store is shared.
    os.makedirs(tmp_path / "other")
    other = h.Cluster(tmp_path / "other", providers=("a",),
                      server_extra={"data_dir": c.data_dir})
    rc, err = _run_to_exit(other.config_path, str(tmp_path / "other.err"))
    assert rc == 1, (rc, err[-2000:])
    assert "another server" in err, err[-2000:]
    # The first server is untouched: its message is still queued, not
    # turned into a lost attempt by the second one's recovery.
    r = h.http(first_port, "GET", "/v1/messages/" + mid)
    assert r.status == 200, r
    assert r.json["status"] == "queued", r.json
    assert r.json["attempts"] == [], r.json
    # Once the first is gone (kill -9: no clean close), the folder is
    # free again: the lock dies with its process.
    c.server.kill9()
    c.start_server()
    assert c.msg(mid)["status"] == "queued"
    c.start_agent("a")
    c.wait_delivered([mid], timeout=20)
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(20) == 0
    assert os.path.exists(os.path.join(c.data_dir, "shivneri.lock"))


def test_clock_stepped_back_does_not_hold_backoff(make_cluster):
    """A backoff written before the wall clock went back an hour is due
    at most retry_max_ms later, not an hour later: no backoff is longer
    than retry_max_ms, so a due time further away is a clock that moved.
    The clock step is played by writing the message's next_ms an hour
    ahead while the server is stopped (the same row a server whose clock
    was an hour fast wrote before it was corrected)."""
    c = make_cluster(providers=("a",))
    c.start_server()
    mid = c.submit()
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(20) == 0
    db = sqlite3.connect(os.path.join(c.data_dir, "shivneri.db"))
    try:
        with db:
            n = db.execute("UPDATE messages SET next_ms = "
                           "CAST(strftime('%s','now') AS INTEGER) * 1000 "
                           "+ 3600000, round = 1 WHERE id = ?",
                           (mid,)).rowcount
        assert n == 1
    finally:
        db.close()
    c.start_server()
    c.start_agent("a")
    # retry_max_ms is 2 s in the harness: well inside this wait.
    c.wait_delivered([mid], timeout=10)


class _LimitedProc(h.Proc):
    """A Proc whose soft file size limit is `limit` bytes (the hard one
    stays, so the test can raise it again while the process runs)."""

    def __init__(self, name, argv, log_path, limit):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.started = time.monotonic()

        def pre():
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=self.log, stderr=self.log,
                                  start_new_session=True, preexec_fn=pre)


def test_disk_fills_mid_flow(make_cluster):
    c = make_cluster(providers=("a",), max_in_flight=4)
    srv = _LimitedProc("server0", [h.BIN, "serve", "-c", c.config_path],
                       os.path.join(c.dir, "server0.log"), 2 << 20)
    c.procs.append(srv)
    c.server = srv
    c.wait_healthy()
    c.start_agent("a")
    accepted, refused, other = [], [], []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(k):
        for i in range(300):
            if stop.is_set():
                return
            r = c.post("/v1/messages",
                       h.message(k * 1000 + i, text="x" * 16000))
            with lock:
                if r.status == 202:
                    accepted.append(r.json["id"])
                elif r.status == 503:
                    refused.append(k * 1000 + i)
                else:
                    other.append(r.status)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    try:
        h.wait_for(lambda: len(refused) >= 20, 30,
                   "submissions refused on the full disk")
    finally:
        stop.set()
        for t in ts:
            t.join(timeout=h.scaled(30))
    assert not other, other[:5]
    assert accepted, "nothing was accepted before the disk filled"
    ready = c.get("/readyz")
    assert ready.status == 503 and ready.json["store"] is False, ready
    # The disk comes back: the store's probe notices with no write of ours.
    unlimited = resource.RLIM_INFINITY
    resource.prlimit(srv.pid, resource.RLIMIT_FSIZE,
                     (unlimited, resource.getrlimit(
                         resource.RLIMIT_FSIZE)[1]))
    h.wait_for(lambda: c.get("/readyz").json["store"], 20,
               "the store writable again")
    accepted.append(c.submit())
    srv.kill9()
    c.start_server()
    c.wait_state("a", "up", timeout=15)
    c.wait_delivered(accepted, timeout=60)
    s = c.stats()
    # Exactly what was accepted: nothing refused came back.
    assert s["delivered"] == len(accepted) and s["queued"] == 0, (
        s, len(accepted))
    found = c.all_maildir_ids(["a"])["a"]
    assert sum(found.values()) >= len(accepted)
    for mid, n in found.items():
        assert mid in accepted, mid
        if n > 1:
            att = c.msg(mid)["attempts"]
            assert any(a["outcome"] == "lost" for a in att), (mid, att)


def test_damaged_page_fails_its_rows_only(make_cluster):
    """One page of message bodies overwritten (a bad sector, a torn
    write the disk did not report): the messages on it fail with
    "corrupt record", every other one is delivered.  Before, the load of
    the batch that held them failed whole, its rowids were put back and
    asked for again, and nothing more was ever delivered."""
    c = make_cluster(providers=("a",))
    c.start_server()
    n = 60
    ids = [c.submit(h.message(i, text="MARK-%04d-" % i + "z" * 3000))
           for i in range(n)]
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(20) == 0
    db = os.path.join(c.data_dir, "shivneri.db")
    assert not os.path.exists(db + "-wal") or os.path.getsize(
        db + "-wal") == 0, "the clean stop left a WAL: checkpoint expected"
    with open(db, "r+b") as f:
        data = f.read()
        at = data.find(b"MARK-0030-")
        assert at > 0, "the body is not where this test looks for it"
        page = 8192
        f.seek(at - at % page)
        f.write(os.urandom(page))
    c.start_server()
    c.start_agent("a")

    def settled():
        s = c.stats()
        return s["queued"] == 0 and s["sending"] == 0 and s
    s = h.wait_for(settled, 20, "every message delivered or failed")
    assert s["failed"] >= 1 and s["delivered"] + s["failed"] == n, s
    assert s["failed"] <= 4, s  # the rows of one page, not the batch
    delivered = c.all_maildir_ids(["a"])["a"]
    for mid in ids:
        if mid not in delivered:
            r = c.get("/v1/messages/" + mid)
            # Its row may be on the damaged page too (no answer then);
            # when it can be read it says why.
            if r.status == 200:
                assert r.json["status"] == "failed", r.json
                assert "corrupt record" in (r.json["error"] or ""), r.json
    # The store stayed writable: a new message goes through.
    mid = c.submit()
    c.wait_delivered([mid], timeout=10)


def all_delivered(c, n):
    """Waits until nothing is queued or sending: n delivered, none
    failed."""
    def settled():
        s = c.stats()
        return s["queued"] == 0 and s["sending"] == 0 and s
    s = h.wait_for(settled, 60, "every message delivered")
    assert s["delivered"] == n and s["failed"] == 0, s


def each_once(c, ids):
    """Provider a's maildir holds each of ids exactly once, and no other."""
    found = c.all_maildir_ids(["a"])["a"]
    assert set(found) == set(ids), (len(found), len(ids))
    assert all(k == 1 for k in found.values()), [
        (m, k) for m, k in found.items() if k != 1]


def queued_and_stopped(make_cluster, n=3000):
    """n messages queued (no agent), then a clean stop, which checkpoints
    the WAL into the database file; (cluster, ids, database path)."""
    c = make_cluster(providers=("a",), max_in_flight=32)
    c.start_server()
    ids = c.submit_many(n, threads=8)
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(20) == 0
    db = os.path.join(c.data_dir, "shivneri.db")
    assert not os.path.exists(db + "-wal") or os.path.getsize(
        db + "-wal") == 0, "the clean stop left a WAL: checkpoint expected"
    return c, ids, db


def _damage_leaf(db_path, table):
    """Overwrites one leaf page in the middle of table's b-tree (found
    with SQLite's dbstat table) and returns how many rows it held."""
    con = sqlite3.connect(db_path)
    try:
        pages = con.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = ? AND "
            "pagetype = 'leaf' ORDER BY pageno", (table,)).fetchall()
        size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    assert len(pages) >= 3, pages
    pageno, ncell = pages[len(pages) // 2]
    with open(db_path, "r+b") as f:
        f.seek((pageno - 1) * size)
        f.write(b"\x5a" * size)
    return ncell


def _metric(c, name):
    r = c.get("/metrics")
    assert r.status == 200, r
    for line in r.body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def test_damaged_messages_page_at_start(make_cluster):
    """A leaf page of the messages table overwritten while the server was
    stopped (a bad sector): the server starts, delivers every message it
    can read, and says how many it cannot (a log line, a metric); the
    store stays writable.  Before, the start-up scan failed on the page
    and serve exited; with the scan alone fixed, the writes of the rows
    next to the page failed (SQLite rebalancing into it) and the
    dispatcher's retries of them held every other message."""
    c, ids, db = queued_and_stopped(make_cluster)
    n = len(ids)
    lost = _damage_leaf(db, "messages")
    assert 0 < lost < 200, lost
    c.start_server()
    with open(c.server.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert "damaged_rows unreadable=%d " % lost in log, log[-3000:]
    assert _metric(c, "shivneri_store_unreadable_rows") == lost
    c.start_agent("a")

    def settled():
        s = c.stats()
        return s["queued"] == 0 and s["sending"] == 0 and s
    s = h.wait_for(settled, 60, "every readable message delivered")
    assert s["delivered"] == n - lost and s["failed"] == 0, (s, lost)
    found = c.all_maildir_ids(["a"])["a"]
    assert len(found) == n - lost, (len(found), n, lost)
    assert set(found) <= set(ids)
    # Left in the table, the damaged rows would now be the oldest queued
    # ones, read by every scrape (the oldest queued message's age); the
    # table was rebuilt without them: the scrape and the writes go
    # through, and the store stays writable.
    assert _metric(c, "shivneri_store_unreadable_rows") == lost
    ready = c.get("/readyz")
    assert ready.status == 200 and ready.json["store"] is True, ready
    mid = c.submit()
    c.wait_delivered([mid], timeout=10)


def test_damaged_status_counts_at_start(make_cluster):
    """status_counts (one page, rewritten by every commit) overwritten
    while the server was stopped: it is counted again from the messages
    at start, every message is delivered and the counts are right.
    Before, recovery failed on it and serve exited."""
    c = make_cluster(providers=("a",))
    c.start_server()
    ids = c.submit_many(50, threads=4)
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(20) == 0
    db = os.path.join(c.data_dir, "shivneri.db")
    con = sqlite3.connect(db)
    try:
        root = con.execute("SELECT rootpage FROM sqlite_schema WHERE "
                           "name = 'status_counts'").fetchone()[0]
        size = con.execute("PRAGMA page_size").fetchone()[0]
    finally:
        con.close()
    with open(db, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(b"\x5a" * size)
    c.start_server()
    assert c.stats()["queued"] == 50, c.stats()
    c.start_agent("a")
    c.wait_delivered(ids, timeout=20)
    s = c.stats()
    assert s["delivered"] == 50 and s["queued"] == 0, s
    assert c.get("/readyz").json["store"] is True


def _damage_leaf_live(db_path, table):
    """Overwrites one leaf page in the middle of table's b-tree under a
    running server and returns how many rows it held.  The pages go to
    the file first (a checkpoint), so the page is read from there; a
    write of another connection then makes the server's connections drop
    their page caches (SQLite does so when the WAL changed under them),
    so the next read of the page sees the damage, as a bad sector would
    show after the page left the cache."""
    con = sqlite3.connect(db_path, timeout=h.scaled(10))
    try:
        # Busy (1) while a reader of the server's holds an older snapshot.
        h.wait_for(lambda: con.execute(
            "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0, 10,
            "a checkpoint of every page into the file")
        pages = con.execute(
            "SELECT pageno, ncell FROM dbstat WHERE name = ? AND "
            "pagetype = 'leaf' ORDER BY pageno", (table,)).fetchall()
        size = con.execute("PRAGMA page_size").fetchone()[0]
        assert len(pages) >= 3, pages
        pageno, ncell = pages[len(pages) // 2]
        with open(db_path, "r+b") as f:
            f.seek((pageno - 1) * size)
            f.write(b"\x5a" * size)
        con.execute("UPDATE status_counts SET n = n")
        con.commit()
    finally:
        con.close()
    return ncell


def test_damaged_row_while_running_fails_alone(make_cluster):
    """A leaf page of the messages table overwritten while the server
    runs (no restart, so no repair): every write of the rows on it fails.
    Each such message is let go after a few tries (counted in
    shivneri_store_unreadable_rows, a damaged_row line, never reported
    delivered or failed) and every other message is delivered.  Before,
    the dispatcher retried the first such write for ever while its pump
    was held, and nothing more was delivered until a restart.  The next
    start repairs the table as for damage found at start."""
    c = make_cluster(providers=("a",), max_in_flight=32)
    c.start_server()
    n = 200
    ids = c.submit_many(n, threads=4)
    db = os.path.join(c.data_dir, "shivneri.db")
    lost = _damage_leaf_live(db, "messages")
    assert 0 < lost < 100, lost
    c.start_agent("a")

    def settled():
        s = c.stats()
        return s["queued"] == 0 and s["sending"] == 0 and s
    s = h.wait_for(settled, 20, "every readable message delivered")
    let_go = _metric(c, "shivneri_store_unreadable_rows")
    # The page's rows, and rows of its two neighbours whose write grew
    # them and so had SQLite rebalance the pages around them, reading the
    # damaged one; never the rest.
    assert lost <= let_go <= 3 * lost + 16, (let_go, lost)
    assert s["delivered"] == n - let_go and s["failed"] == 0, (s, let_go)
    found = c.all_maildir_ids(["a"])["a"]
    assert len(found) >= n - let_go and set(found) <= set(ids)
    for mid in set(ids) - set(found):
        r = c.get("/v1/messages/" + mid)
        # Unreadable (no answer) or as the disk has it: never an outcome.
        assert r.status != 200 or r.json["status"] in (
            "queued", "sending"), r.json
    with open(c.server.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert " damaged_row write=" in log, log[-3000:]
    assert c.get("/readyz").json["store"] is True
    mid = c.submit()
    c.wait_delivered([mid], timeout=10)
    # The next start moves the damaged rows out and counts them.
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(20) == 0
    c.start_server()
    with open(c.server.log_path, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert "damaged_rows unreadable=" in log, log[-3000:]
    s = h.wait_for(settled, 20, "the readable rest delivered")
    assert s["failed"] == 0 and s["delivered"] >= n + 1 - let_go, s
    assert _metric(c, "shivneri_store_unreadable_rows") <= lost
    # A message delivered whose `delivered` could not be recorded was
    # sent again: the second start recorded the first try as lost.
    found = c.all_maildir_ids(["a"])["a"]
    for mid, k in found.items():
        if k > 1:
            att = c.msg(mid)["attempts"]
            assert any(a["outcome"] == "lost" for a in att), (mid, att)


def _log(c):
    with open(c.server.log_path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_damaged_index_page_at_start(make_cluster):
    """A leaf page of messages_active (the index of queued and sending
    messages the start-up scan walks) overwritten while the server was
    stopped, every row intact: the server starts, logs that it built the
    index again from the table, and delivers every message exactly once.
    Before, the scan failed on the index and serve exited: nothing was
    sent."""
    c, ids, db = queued_and_stopped(make_cluster)
    n = len(ids)
    assert _damage_leaf(db, "messages_active") > 0
    c.start_server()
    log = _log(c)
    assert "reindexed index=messages_active table=messages " \
        "reason=start_check" in log, log[-3000:]
    assert "damaged_rows" not in log, log[-3000:]
    assert c.stats()["queued"] == n, c.stats()
    assert _metric(c, "shivneri_store_unreadable_rows") == 0
    c.start_agent("a")
    all_delivered(c, n)
    each_once(c, ids)
    assert c.get("/readyz").json["store"] is True
    mid = c.submit()
    c.wait_delivered([mid], timeout=10)


def test_damaged_index_while_running(make_cluster):
    """A leaf page of the id's index overwritten while the server runs
    (the start does not read that index): looking messages up by id
    fails for the ids on it, the server says which index is damaged (a
    line, shivneri_store_damaged_indexes) and keeps delivering (a send
    reads and writes rows by rowid); the next start builds the index
    again, and every message is then found, delivered exactly once."""
    c = make_cluster(providers=("a",), max_in_flight=32)
    c.start_server()
    n = 1000
    ids = c.submit_many(n, threads=8)
    db = os.path.join(c.data_dir, "shivneri.db")
    assert _damage_leaf_live(db, "sqlite_autoindex_messages_1") > 0
    failed = [m for m in ids if c.get("/v1/messages/" + m).status != 200]
    assert failed, "no lookup met the damaged page"
    h.wait_for(lambda: _metric(c, "shivneri_store_damaged_indexes") == 1,
               10, "the damaged index found")
    assert "index_damaged index=sqlite_autoindex_messages_1" in _log(c)
    assert c.get("/readyz").json["store"] is True
    c.start_agent("a")
    all_delivered(c, n)
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(20) == 0
    c.start_server()
    assert "reindexed index=sqlite_autoindex_messages_1 table=messages " \
        "reason=noted_while_running" in _log(c)
    assert _metric(c, "shivneri_store_damaged_indexes") == 0
    for mid in failed:
        assert c.msg(mid)["status"] == "delivered", mid
    each_once(c, ids)
