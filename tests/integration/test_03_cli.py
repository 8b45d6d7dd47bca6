"""The client commands of SPEC.md against a running server, and their exit
statuses: 0 done, 1 failed at run time, 2 usage or configuration error."""

import os
import re
import subprocess

import pytest

import shivneri_harness as h


def run(*args, timeout=20):
    return subprocess.run([h.BIN] + list(args), capture_output=True,
                          text=True, timeout=h.scaled(timeout),
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def cl(module_cluster_factory):
    c = module_cluster_factory(providers=("a", "b"))
    c.start_server()
    c.start_agent("a")
    c.start_agent("b")
    c.url = "http://127.0.0.1:%d" % c.http_port
    return c


def sent_id(r):
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    out = r.stdout.strip()
    assert out, r
    mid = out.split()[-1]
    assert re.fullmatch(r"[0-9A-Za-z_-]{8,64}", mid), out
    return mid


def test_send_text_and_status(cl):
    r = run("send", "--url", cl.url, "--from", "ann@example.com",
            "--to", "bob@example.net", "--to", "carol@example.org",
            "--cc", "dan@example.com", "--subject", "from the cli",
            "--text", "hello from the cli")
    mid = sent_id(r)
    cl.wait_delivered([mid])
    m = cl.msg(mid)
    assert m["subject"] == "from the cli", m
    assert "bob@example.net" in m["to"] and "carol@example.org" in m["to"]
    path = os.path.join(cl.maildir(m["provider"]), "new")
    files = h.maildir_ids(cl.maildir(m["provider"]))
    assert files.get(mid) == 1
    blob = b"".join(open(os.path.join(path, f), "rb").read()
                    for f in os.listdir(path))
    assert b"dan@example.com" in blob
    assert b"hello from the cli" in blob

    s = run("status", "--url", cl.url, mid)
    assert s.returncode == 0, s
    assert mid in s.stdout, s.stdout
    assert "delivered" in s.stdout, s.stdout
    assert m["provider"] in s.stdout, s.stdout


def test_send_text_file_and_attach(cl, tmp_path):
    body = tmp_path / "body.txt"
    body.write_text("body from a file\n")
    att = tmp_path / "report.bin"
    att.write_bytes(os.urandom(3000))
    html = tmp_path / "body.html"
    html.write_text("<p>html part</p>\n")
    r = run("send", "--url", cl.url, "--from", "Ann <ann@example.com>",
            "--to", "bob@example.net", "--subject", "files",
            "--text-file", str(body), "--html-file", str(html),
            "--attach", str(att))
    mid = sent_id(r)
    cl.wait_delivered([mid])
    m = cl.msg(mid)
    d = os.path.join(cl.maildir(m["provider"]), "new")
    found = None
    for f in os.listdir(d):
        data = open(os.path.join(d, f), "rb").read()
        if mid.encode() in data:
            found = data
    assert found is not None
    assert b"report.bin" in found
    assert b"body from a file" in found
    assert b"html part" in found


def test_send_missing_file_is_usage_or_runtime_error(cl, tmp_path):
    r = run("send", "--url", cl.url, "--from", "ann@example.com",
            "--to", "bob@example.net", "--subject", "x",
            "--text-file", str(tmp_path / "no-such-file"))
    assert r.returncode in (1, 2), r
    assert r.stderr.strip(), r


def test_send_refused_by_server_exits_1(cl):
    r = run("send", "--url", cl.url, "--from", "nope",
            "--to", "bob@example.net", "--subject", "x", "--text", "t")
    assert r.returncode == 1, r
    assert r.stderr.strip(), r


def test_providers(cl):
    r = run("providers", "--url", cl.url)
    assert r.returncode == 0, r
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    for name in ("a", "b"):
        assert any(re.search(r"\b%s\b" % name, ln) and "up" in ln and
                   "maildir" in ln for ln in lines), r.stdout


def column(out, name, provider):
    """The word under heading name (a left-aligned column) on provider's
    line of a `shivneri providers` table."""
    lines = out.splitlines()
    row = [ln for ln in lines[1:] if ln.split()[:1] == [provider]]
    assert len(row) == 1, out
    at = lines[0].index(" %s " % name) + 1
    return row[0][at:].split(" ", 1)[0] if name != "MAX_SIZE" else \
        " ".join(row[0][at:].split()[:2])


def test_providers_link_and_size(cl):
    """The agent's link and the size limit, as GET /v1/providers has
    them: linked in clear on loopback, the server's 25 MiB, none
    lowered."""
    r = run("providers", "--url", cl.url)
    assert r.returncode == 0, r
    for name in ("a", "b"):
        assert column(r.stdout, "LINK", name) == "plain", r.stdout
        assert column(r.stdout, "MAX_SIZE", name) == "25 MiB", r.stdout
        assert column(r.stdout, "LOWERED_UNTIL", name) == "-", r.stdout
        assert column(r.stdout, "NO_SMTPUTF8_UNTIL", name) == "-", r.stdout
    # The older columns keep their places: the new ones come before REASON.
    head = r.stdout.splitlines()[0].split()
    assert head[:8] == ["NAME", "TYPE", "STATE", "IN_FLIGHT", "DELIVERED",
                        "FAILED", "LAST_HEARTBEAT", "PAUSED_UNTIL"], head
    assert head[-1] == "REASON", head


def test_providers_units_tls_and_lowered():
    """Every shape of the three fields, from a stand-in server: a TLS
    link, no agent linked (null), sizes in MiB, MB, KiB, kB and rounded
    down, and a lowered limit's time; --json keeps them as they are."""
    from test_99b_ops_config_hostile import FakeApi
    import json
    until = "2026-11-30T23:15:00.000Z"
    provs = [
        {"name": "t", "state": "up", "link_tls": True,
         "max_message_bytes": 26214400,
         "max_message_bytes_learned_until": None},
        {"name": "n", "state": "down", "link_tls": None,
         "max_message_bytes": 20000000,
         "max_message_bytes_learned_until": None},
        {"name": "s", "state": "up", "link_tls": False,
         "max_message_bytes": 29999999,
         "max_message_bytes_learned_until": None},
        {"name": "l", "state": "up", "link_tls": False,
         "max_message_bytes": 40013,
         "max_message_bytes_learned_until": until},
        {"name": "k", "state": "up", "link_tls": False,
         "max_message_bytes": 2048},
        {"name": "d", "state": "up", "max_message_bytes": 5000},
    ]
    fake = FakeApi({"/v1/providers": (200, json.dumps(
        {"providers": provs}).encode())})
    try:
        r = run("providers", "--url", fake.url)
        j = run("providers", "--json", "--url", fake.url)
    finally:
        fake.close()
    assert r.returncode == 0, r
    want = {"t": ("tls", "25 MiB", "-"), "n": ("-", "20 MB", "-"),
            "s": ("plain", "29.9 MB", "-"),
            "l": ("plain", "40.0 kB", until), "k": ("plain", "2 KiB", "-"),
            "d": ("-", "5 kB", "-")}
    for name, (link, size, lowered) in want.items():
        got = (column(r.stdout, "LINK", name),
               column(r.stdout, "MAX_SIZE", name),
               column(r.stdout, "LOWERED_UNTIL", name))
        assert got == (link, size, lowered), (name, r.stdout)
    assert j.returncode == 0, j
    assert json.loads(j.stdout)["providers"] == provs, j.stdout


def test_queue(cl):
    r = run("queue", "--url", cl.url)
    assert r.returncode == 0, r
    for word in ("queued", "sending", "delivered", "failed"):
        assert word in r.stdout, r.stdout
    delivered = cl.stats()["delivered"]
    assert str(delivered) in r.stdout, (delivered, r.stdout)


def test_status_unknown_id(cl):
    r = run("status", "--url", cl.url, "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert r.returncode == 1, r


def test_version():
    r = run("version")
    assert r.returncode == 0, r
    assert "0.1.0" in r.stdout, r.stdout
    assert re.search(r"(?i)libevent", r.stdout), r.stdout
    assert re.search(r"(?i)sqlite", r.stdout), r.stdout


@pytest.mark.parametrize("cmd", ["serve", "agent", "send", "status",
                                 "providers", "queue", "check-config",
                                 "version"])
def test_help(cmd):
    r = run(cmd, "--help")
    assert r.returncode == 0, r
    assert r.stdout.strip(), r


def test_top_level_help_and_unknown_command():
    assert run("--help").returncode == 0
    r = run("frobnicate")
    assert r.returncode == 2, r
    assert "frobnicate" in r.stderr
    assert run().returncode == 2


def test_bad_usage_exits_2():
    assert run("send", "--no-such-option").returncode == 2
    assert run("status").returncode == 2
    assert run("check-config").returncode == 2


def test_connection_refused_exits_1():
    url = "http://127.0.0.1:%d" % h.free_port()
    r = run("send", "--url", url, "--from", "ann@example.com", "--to",
            "bob@example.net", "--subject", "x", "--text", "t")
    assert r.returncode == 1, r
    assert r.stderr.strip(), r
    for cmd in ("providers", "queue"):
        r = run(cmd, "--url", url)
        assert r.returncode == 1, (cmd, r)
    r = run("status", "--url", url, "01ZZZZZZZZZZZZZZZZZZZZZZZZ")
    assert r.returncode == 1, r


def test_check_config_ok(cl):
    r = run("check-config", "-c", cl.config_path)
    assert r.returncode == 0, r


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_check_config_bad_integer(tmp_path):
    p = write_lines(tmp_path / "bad.ini", [
        "[server]",                             # 1
        "data_dir = %s" % (tmp_path / "data"),  # 2
        "http_listen = 127.0.0.1:1",            # 3
        "heartbeat_interval_ms = fast",         # 4
        "max_attempts = 10",                    # 5
    ])
    r = run("check-config", "-c", p)
    assert r.returncode == 2, r
    assert "%s:4" % p in r.stderr, r.stderr
    assert "heartbeat_interval_ms" in r.stderr, r.stderr


def test_check_config_unknown_type_and_many_errors(tmp_path):
    p = write_lines(tmp_path / "bad2.ini", [
        "[server]",                             # 1
        "data_dir = %s" % (tmp_path / "data"),  # 2
        "scheduler = by_mood",                  # 3
        "",                                     # 4
        "[provider.x]",                         # 5
        "type = pigeon",                        # 6
        "",                                     # 7
        "[provider.y]",                         # 8
        "type = maildir",                       # 9
        "path = %s" % (tmp_path / "md"),        # 10
        "max_in_flight = -3",                   # 11
    ])
    r = run("check-config", "-c", p)
    assert r.returncode == 2, r
    assert "%s:6" % p in r.stderr, r.stderr
    assert "pigeon" in r.stderr or "type" in r.stderr, r.stderr
    assert "%s:3" % p in r.stderr, r.stderr
    assert "%s:11" % p in r.stderr, r.stderr


def test_check_config_missing_file(tmp_path):
    r = run("check-config", "-c", str(tmp_path / "absent.ini"))
    assert r.returncode == 2, r
    assert "absent.ini" in r.stderr, r.stderr


def test_serve_bad_config_exits_2(tmp_path):
    p = write_lines(tmp_path / "bad3.ini", ["[server]", "max_attempts = x"])
    r = run("serve", "-c", p)
    assert r.returncode == 2, r
    assert "%s:2" % p in r.stderr, r.stderr
