"""Data exposure (issue 6, items 8 and 9).

Item 8: the store's files were created 0644, so in a data folder made by
hand (or by a package) with mode 0755 any local user could read every
message body; a group- or world-readable agent secret was only warned
about.  Now serve and agent run with umask 077, the store makes its files
0600 whatever the umask, and a secret file other users may read is refused
by check-config, serve and agent alike (exit 2, FILE:LINE).

Item 9: Idempotency-Key was global across API keys: the holder of key B
who reused A's idempotency key got A's message id and B's message was
dropped.  Now keys are per API key, and a reused key with another body is
refused with 422 `idempotency_conflict`.
"""

import os
import stat
import subprocess

import shivneri_harness as h

STORE_FILES = ("shivneri.db", "shivneri.db-wal", "shivneri.db-shm",
               "shivneri.store")


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def run(args, cwd, timeout=20):
    """Runs the binary; one still running at the deadline (it accepted
    what it should have refused) is killed and reported as None."""
    p = subprocess.Popen([h.BIN] + args, cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    try:
        _, err = p.communicate(timeout=h.scaled(timeout))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        _, err = p.communicate()
        return None, err
    return p.returncode, err


def line_of(path, key):
    with open(path) as f:
        for n, text in enumerate(f, 1):
            if text.startswith(key + " ="):
                return n
    raise AssertionError("no %s in %s" % (key, path))


def test_store_files_private_under_umask_022(make_cluster):
    """A data folder made by hand 0755 and a server started with umask
    022: every file of the store (and the log) is 0600."""
    c = make_cluster(providers=("a",))
    c.server_extra["log_file"] = os.path.join(c.dir, "server.log")
    c.write_config()
    os.mkdir(c.data_dir, 0o755)
    os.chmod(c.data_dir, 0o755)
    old = os.umask(0o022)
    try:
        c.start_server()
    finally:
        os.umask(old)
    c.submit(h.message(1))
    # The commit is on disk: the WAL and its index exist while it runs.
    for name in STORE_FILES:
        path = os.path.join(c.data_dir, name)
        assert mode(path) == 0o600, (name, oct(mode(path)))
    assert mode(os.path.join(c.dir, "server.log")) == 0o600
    assert mode(c.data_dir) == 0o755  # the operator's folder is left alone


def test_readable_secrets_refused(make_cluster):
    """A 0644 agent secret, a 0640 api_keys_file: check-config, serve and
    agent all exit 2 naming the file and line; 0600 starts."""
    c = make_cluster(providers=("a",))
    keys = os.path.join(c.dir, "api-keys")
    c.write_secret(keys, "key-one-0123456789abcdef")
    c.server_extra["api_keys_file"] = keys
    c.write_config()
    os.chmod(c.secret_path, 0o644)
    os.chmod(keys, 0o640)
    cfg = c.config_path
    secret_at = "%s:%d: agent_secret_file: " % (
        cfg, line_of(cfg, "agent_secret_file"))
    keys_at = "%s:%d: api_keys_file: " % (cfg, line_of(cfg, "api_keys_file"))
    for args in (["check-config", "-c", cfg], ["serve", "-c", cfg]):
        status, err = run(args, c.dir)
        assert status == 2, (args[0], status, err)
        assert secret_at in err and "mode 644" in err, (args[0], err)
        assert keys_at in err and "mode 640" in err, (args[0], err)
        assert "chmod 600" in err, (args[0], err)
    status, err = run(["agent", "-c", cfg, "-p", "a"], c.dir)
    assert status == 2, ("agent", status, err)
    assert secret_at in err and "mode 644" in err, ("agent", err)
    assert not os.path.exists(os.path.join(c.data_dir, "shivneri.db"))

    os.chmod(c.secret_path, 0o600)
    os.chmod(keys, 0o600)
    status, err = run(["check-config", "-c", cfg], c.dir)
    assert status == 0, err
    c.start_server()
    c.start_agent("a", wait=False)
    auth = {"Authorization": "Bearer key-one-0123456789abcdef"}
    h.wait_for(lambda: c.get("/v1/providers", headers=auth).json[
        "providers"][0]["state"] == "up", 10, "agent a up")


def test_idempotency_key_per_api_key(make_cluster):
    """Two API keys, one Idempotency-Key: each key's holder gets its own
    message; a retry gets its first id; another body under a used key is
    422 and stores nothing."""
    c = make_cluster(providers=("a",))
    keys = os.path.join(c.dir, "api-keys")
    c.write_secret(keys, "key-a-0123456789abcdef\nkey-b-0123456789abcdef")
    c.server_extra["api_keys_file"] = keys
    c.write_config()
    c.start_server()
    auth_a = {"Authorization": "Bearer key-a-0123456789abcdef",
              "Idempotency-Key": "order-17"}
    auth_b = {"Authorization": "Bearer key-b-0123456789abcdef",
              "Idempotency-Key": "order-17"}
    msg_a = h.message(1, subject="from a")
    msg_b = h.message(2, subject="from b", to=["carol@example.net"])

    ra = c.post("/v1/messages", msg_a, headers=auth_a)
    assert ra.status == 202, ra
    id_a = ra.json["id"]
    rb = c.post("/v1/messages", msg_b, headers=auth_b)
    assert rb.status == 202, rb  # was 200 with A's id, B's message dropped
    id_b = rb.json["id"]
    assert id_b != id_a

    # Retries with the same body get their own first id back.
    r = c.post("/v1/messages", msg_a, headers=auth_a)
    assert r.status == 200 and r.json == {"id": id_a, "duplicate": True}, r
    r = c.post("/v1/messages", msg_b, headers=auth_b)
    assert r.status == 200 and r.json == {"id": id_b, "duplicate": True}, r
    # A's key with another body: refused, nothing stored.
    r = c.post("/v1/messages", msg_b, headers=auth_a)
    h.assert_error(r, 422, {"idempotency_conflict"})
    assert id_a not in r.body.decode() and id_b not in r.body.decode(), r

    get = {"Authorization": auth_a["Authorization"]}
    assert c.get("/v1/messages/" + id_a, headers=get).json[
        "subject"] == "from a"
    assert c.get("/v1/messages/" + id_b, headers=get).json[
        "subject"] == "from b"
    st = c.get("/v1/stats", headers=get).json
    assert sum(st[k] for k in ("queued", "sending", "delivered",
                               "failed")) == 2, st
    # The database holds neither API key.
    with open(os.path.join(c.data_dir, "shivneri.db"), "rb") as f:
        data = f.read()
    for p in ("shivneri.db-wal",):
        path = os.path.join(c.data_dir, p)
        if os.path.exists(path):
            with open(path, "rb") as f:
                data += f.read()
    assert b"key-a-0123456789abcdef" not in data
    assert b"key-b-0123456789abcdef" not in data
    assert b"order-17" in data  # the test looked in the right place
