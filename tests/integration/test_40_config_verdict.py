"""check-config and serve give one verdict on one file (issue 5, defect 8).

Each bad configuration below used to pass check-config and then make serve
refuse to start (or, for `agent_secret_file = env:VAR`, make serve write a
file literally named `env:VAR`).  Both commands now run the same run-time
checks: both exit 2 and name the file and the line of the key at fault.
serve must exit by itself: one still running after the deadline accepted a
file it should have refused.
"""

import os
import subprocess

import pytest

import shivneri_harness as h


def run(args, cwd, env=None, timeout=20):
    """Runs the binary; a serve that keeps running is killed and reported
    as None."""
    p = subprocess.Popen([h.BIN] + args, cwd=cwd, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=h.scaled(timeout))
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        out, err = p.communicate()
        return None, out + err
    return p.returncode, err


def write_config(tmp_path, lines):
    """INI from lines; returns the path.  Line N of the file is lines[N-1]."""
    path = tmp_path / "bad.ini"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def base(tmp_path, **over):
    """The [server] lines of a config that would start, keys in a fixed
    order, with some replaced or added."""
    secret = tmp_path / "agent.secret"
    if not secret.exists():
        h.Cluster.write_secret(str(secret), os.urandom(32).hex())
    keys = {
        "data_dir": str(tmp_path / "data"),
        "http_listen": "127.0.0.1:%d" % h.free_port(),
        "smtp_listen": "",
        "agent_listen": "127.0.0.1:%d" % h.free_port(),
        "agent_secret_file": str(secret),
    }
    keys.update(over)
    return ["[server]"] + ["%s = %s" % kv for kv in keys.items()]


def line_of(lines, key):
    for i, text in enumerate(lines):
        if text.startswith(key + " ="):
            return i + 1
    raise AssertionError("no %s in %r" % (key, lines))


def both_refuse(tmp_path, lines, key, words, env=None):
    """check-config and serve both exit 2 with FILE:LINE naming key."""
    path = write_config(tmp_path, lines)
    where = "%s:%d: %s" % (path, line_of(lines, key), key)
    env = dict(os.environ, **(env or {}))
    for args in (["check-config", "-c", path], ["serve", "-c", path]):
        status, err = run(args, str(tmp_path), env)
        assert status == 2, (args[0], status, err)
        assert where in err, (args[0], where, err)
        assert words in err, (args[0], words, err)


def test_short_agent_secret(tmp_path):
    short = tmp_path / "short.secret"
    h.Cluster.write_secret(str(short), "0123456789")
    lines = base(tmp_path, agent_secret_file=str(short))
    both_refuse(tmp_path, lines, "agent_secret_file", "shorter than 16")


def test_unreadable_agent_secret(tmp_path):
    # A folder where the file should be: unreadable even for root.
    d = tmp_path / "secret-dir"
    d.mkdir()
    lines = base(tmp_path, agent_secret_file=str(d))
    both_refuse(tmp_path, lines, "agent_secret_file", "cannot read")


def test_agent_secret_cannot_be_made(tmp_path):
    blocker = tmp_path / "plain-file"
    blocker.write_text("x\n")
    lines = base(tmp_path, agent_secret_file=str(blocker / "agent.secret"))
    both_refuse(tmp_path, lines, "agent_secret_file", "plain-file")


def test_missing_api_keys_file(tmp_path):
    lines = base(tmp_path, api_keys_file=str(tmp_path / "no-keys"))
    both_refuse(tmp_path, lines, "api_keys_file", "No such file")


def test_unset_env_agent_secret(tmp_path):
    env = dict(os.environ)
    env.pop("SHIVNERI_IT_NO_SUCH_VAR", None)
    lines = base(tmp_path, agent_secret_file="env:SHIVNERI_IT_NO_SUCH_VAR")
    both_refuse(tmp_path, lines, "agent_secret_file", "is not set")
    assert not (tmp_path / "env:SHIVNERI_IT_NO_SUCH_VAR").exists()
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("other", ["127.0.0.1", "localhost", "0.0.0.0"])
def test_http_listen_is_agent_listen(tmp_path, other):
    port = h.free_port()
    lines = base(tmp_path, http_listen="127.0.0.1:%d" % port,
                 agent_listen="%s:%d" % (other, port))
    both_refuse(tmp_path, lines, "agent_listen", "http_listen")


def test_smtp_listen_is_http_listen(tmp_path):
    port = h.free_port()
    lines = base(tmp_path, http_listen="127.0.0.1:%d" % port,
                 smtp_listen="127.0.0.1:%d" % port)
    both_refuse(tmp_path, lines, "smtp_listen", "http_listen")


def test_log_file_in_missing_folder(tmp_path):
    lines = base(tmp_path, log_file=str(tmp_path / "no-folder" / "s.log"))
    both_refuse(tmp_path, lines, "log_file", "does not exist")


def test_env_agent_secret_is_used_not_written(tmp_path):
    """agent_secret_file = env:VAR: serve and a spawned agent use it, and
    no file of that name appears."""
    c = h.Cluster(tmp_path, providers=("a",), spawn=True)
    try:
        c.server_extra["agent_secret_file"] = "env:SHIVNERI_IT_SECRET"
        c.write_config()
        env = dict(os.environ, SHIVNERI_IT_SECRET=os.urandom(24).hex())
        status, err = run(["check-config", "-c", c.config_path],
                          str(tmp_path), env)
        assert status == 0, err
        # serve runs in tmp_path, where a file named env:... would land.
        argv = ["/bin/sh", "-c", 'cd "$1" && exec "$2" serve -c "$3"',
                "sh", str(tmp_path), h.BIN, c.config_path]
        c.server = h.Proc("server0", argv,
                          os.path.join(c.dir, "server0.log"), env=env)
        c.procs.append(c.server)
        c.wait_healthy()
        c.wait_state("a", "up", timeout=15)
        c.wait_delivered([c.submit()])
        assert not (tmp_path / "env:SHIVNERI_IT_SECRET").exists()
        assert not os.path.exists(
            os.path.join(c.data_dir, "env:SHIVNERI_IT_SECRET"))
    finally:
        c.kill_all()
        c.dump_logs()
        assert not c.sanitizer_reports()


def test_missing_agent_secret_in_writable_folder_is_fine(tmp_path):
    """The default: serve makes the secret on first start, so check-config
    must not call its absence an error."""
    lines = base(tmp_path, agent_secret_file=str(tmp_path / "new" / "s"))
    path = write_config(tmp_path, lines)
    status, err = run(["check-config", "-c", path], str(tmp_path))
    assert status == 0, err


def test_webhook_ca_file_without_a_certificate(tmp_path):
    """A CA file that is not one (a key, a truncated copy) used to pass
    both and make every webhook fail at send time."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
    secret = tmp_path / "webhook.secret"
    h.Cluster.write_secret(str(secret), os.urandom(32).hex())
    lines = base(tmp_path, webhook_url="https://127.0.0.1:9/hook",
                 webhook_secret_file=str(secret),
                 webhook_tls_ca_file=str(ca))
    both_refuse(tmp_path, lines, "webhook_tls_ca_file",
                "no PEM certificate")


def test_provider_ca_file_without_a_certificate(tmp_path):
    """The same for a spawned provider's tls_ca_file: its agent would
    start and fail every send, its provider down for good."""
    ca = tmp_path / "ca.pem"
    ca.write_text("just text\n")
    key = tmp_path / "pm.key"
    h.Cluster.write_secret(str(key), "pm-token-0123456789")
    lines = base(tmp_path) + [
        "[provider.pm]", "type = postmark", "spawn = yes",
        "server_token_file = %s" % key,
        "base_url = https://127.0.0.1:9", "tls_ca_file = %s" % ca]
    both_refuse(tmp_path, lines, "tls_ca_file", "no PEM certificate")
