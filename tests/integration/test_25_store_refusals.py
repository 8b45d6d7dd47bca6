"""A data folder that has held a store never silently starts empty.

Acknowledged mail lives in the database; if that file is truncated to
zero bytes or deleted (a bad restore, a careless clean-up), starting an
empty store in its place would lose every queued message without a word.
The server refuses to start, says why on stderr even when log_file is
set (an operator starting it by hand or a service manager sees it), and
leaves the folder as it was.  A database path that is a folder says so."""

import os
import signal
import subprocess

import shivneri_harness as h


def _start_and_fail(c):
    """Runs serve to its exit; returns (exit status, stderr text)."""
    p = subprocess.run([h.BIN, "serve", "-c", c.config_path],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       timeout=h.scaled(20))
    return p.returncode, p.stderr.decode("utf-8", "replace")


def _stored_then_stopped(make_cluster, tmp_path):
    log = str(tmp_path / "server.log")
    c = make_cluster(providers=("a",), server_extra={"log_file": log})
    c.start_server()
    r = c.post("/v1/messages", h.message(1))
    assert r.status == 202, r
    mid = r.json["id"]
    c.server.signal(signal.SIGTERM)
    assert c.server.wait_exit(20) == 0
    return c, mid, log


def test_zero_byte_database_refused(make_cluster, tmp_path):
    c, mid, log = _stored_then_stopped(make_cluster, tmp_path)
    db = os.path.join(c.data_dir, "shivneri.db")
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    open(db, "wb").close()
    rc, err = _start_and_fail(c)
    assert rc == 1, (rc, err)
    assert "held a store" in err and "shivneri.db" in err, err
    # The refusal is in the log file too, and nothing was recreated.
    with open(log, encoding="utf-8", errors="replace") as f:
        assert "held a store" in f.read()
    assert os.path.getsize(db) == 0


def test_deleted_database_refused(make_cluster, tmp_path):
    c, mid, log = _stored_then_stopped(make_cluster, tmp_path)
    db = os.path.join(c.data_dir, "shivneri.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.unlink(db + suffix)
    rc, err = _start_and_fail(c)
    assert rc == 1, (rc, err)
    assert "held a store" in err, err
    assert not os.path.exists(db)


def test_database_path_is_a_folder(make_cluster, tmp_path):
    c = make_cluster(providers=("a",),
                     server_extra={"log_file": str(tmp_path / "s.log")})
    os.makedirs(os.path.join(c.data_dir, "shivneri.db"))
    rc, err = _start_and_fail(c)
    assert rc == 1, (rc, err)
    assert "is a folder" in err, err


def test_restart_keeps_the_message(make_cluster, tmp_path):
    """The guard does not stand in the way of an ordinary restart."""
    c, mid, log = _stored_then_stopped(make_cluster, tmp_path)
    c.start_server()
    assert c.msg(mid)["status"] == "queued"
