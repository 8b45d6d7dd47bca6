"""A real Postfix (Debian's package) started by a test as an SMTP smarthost
on 127.0.0.1: STARTTLS required, SMTP AUTH (PLAIN, LOGIN) through Cyrus
SASL with a private sasldb, some recipients refused for good by an access
table, and every accepted message put on hold so nothing ever leaves; a
test reads what arrived from Postfix's own queue (postqueue -j, postcat).

Everything is in a private folder: its own config_directory and
queue_directory, so the system's Postfix (unconfigured on purpose) is never
touched.  The folder is outside pytest's tmp tree because Postfix's
unprivileged daemons must reach it (pytest's tree is mode 0700).  Starting
it needs root (the daemons drop to the postfix user) and the packages
postfix, libsasl2-modules and sasl2-bin (scripts/install-deps.sh).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

# Imported by the integration tests only, which have the harness on the path.
from shivneri_harness import pid_alive

# The services a private Postfix needs, none chrooted (the chroot would
# need a copy of /etc and the SASL plugins).
SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

REALM = "relay.test"


def missing_tools():
    """The commands this needs that are not installed."""
    return [t for t in ("postfix", "postqueue", "postcat", "saslpasswd2")
            if shutil.which(t) is None]


class PrivatePostfix:
    """A Postfix of its own: config_directory and queue_directory in a
    fresh folder under /tmp (mode 0755: Postfix's unprivileged daemons
    must reach it, and pytest's tree is 0700), its log in maillog.  A
    subclass writes main.cf from common_main_cf() and its own lines, and
    master.cf with master_cf()."""

    def __init__(self, prefix, timeout=30):
        self.timeout = timeout
        self.dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.queue = os.path.join(self.dir, "queue")
        data = os.path.join(self.dir, "data")
        for d in (self.etc, self.queue, data):
            os.mkdir(d, 0o755)
        shutil.chown(data, "postfix", "postfix")
        self.maillog = os.path.join(self.dir, "maillog")
        self.started = False

    @staticmethod
    def master_cf(smtpd_port=None):
        """The services, and an smtpd on 127.0.0.1:smtpd_port if given."""
        line = ("127.0.0.1:%d inet n -       n       -       -       smtpd\n"
                % smtpd_port if smtpd_port is not None else "")
        return line + SERVICES

    def common_main_cf(self, hostname):
        """The main.cf lines every private Postfix has: where it lives,
        loopback IPv4 only, no local delivery."""
        return [
            "compatibility_level = 3.6",
            "queue_directory = " + self.queue,
            "data_directory = " + os.path.join(self.dir, "data"),
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "maillog_file = " + self.maillog,
            "maillog_file_prefixes = /tmp",
            "inet_interfaces = loopback-only",
            "inet_protocols = ipv4",
            "myhostname = " + hostname,
            "mydestination =",
            "alias_maps =",
            "alias_database ="]

    def _write(self, name, text, mode=None):
        path = os.path.join(self.etc, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o644 if mode is None else mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def _run(self, argv, **kw):
        return subprocess.run(argv, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=self.timeout,
                              **kw)

    def master_pid(self):
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                pid = int(f.read().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def start(self):
        """Starts the master (the caller waits for what it needs)."""
        p = self._run(["postfix", "-c", self.etc, "start"])
        self.started = True
        if p.returncode != 0:
            raise RuntimeError("postfix start: %s\n%s" %
                               (p.stdout.decode(errors="replace"),
                                self.log_tail()))

    def log_text(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])

    def stop(self):
        if self.started:
            pid = self.master_pid()
            self._run(["postfix", "-c", self.etc, "stop"])
            deadline = time.monotonic() + 10
            while self.master_pid() is not None and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            # Only the master this module started, by its pid.
            if self.master_pid() is not None and pid is not None:
                os.kill(pid, 9)
        shutil.rmtree(self.dir, ignore_errors=True)


class PostfixSmarthost(PrivatePostfix):
    """A private Postfix listening on 127.0.0.1:port.  user/password is
    the one SASL account; refused {address: "550 5.1.1 text"} are the
    recipients refused at RCPT (an access table's action may be the reply
    itself); cert/key are its TLS certificate."""

    def __init__(self, port, cert, key, user, password, refused,
                 timeout=30):
        super().__init__("shivneri-smarthost-", timeout)
        self.port = port
        self.user = user
        self.cert = os.path.join(self.etc, "server.pem")
        self.key = os.path.join(self.etc, "server.key")
        shutil.copyfile(cert, self.cert)
        shutil.copyfile(key, self.key)
        os.chmod(self.cert, 0o644)
        os.chmod(self.key, 0o600)
        self._write("rcpt_access", "".join(
            "%s %s\n" % (a, text) for a, text in refused.items()))
        # The HOLD action keeps each accepted message in the hold queue,
        # where the queue manager never takes it: nothing is delivered.
        self._write("client_hold", "127.0.0.1 HOLD held by the test\n")
        self._sasl(password)
        self._write("master.cf", self.master_cf(port))
        self._write("main.cf", self.main_cf())

    def _sasl(self, password):
        """Cyrus SASL for smtpd (the application name "smtpd" reads
        smtpd.conf under cyrus_sasl_config_path), with the account in a
        sasldb only Postfix's daemons read."""
        # Debian's Postfix reads smtpd.conf from config_directory/sasl;
        # cyrus_sasl_config_path says the same to any other build.  The
        # sasldb is outside config_directory, which must be root's.
        self.sasl = os.path.join(self.etc, "sasl")
        os.mkdir(self.sasl, 0o755)
        dbdir = os.path.join(self.dir, "sasldb")
        os.mkdir(dbdir, 0o755)
        db = os.path.join(dbdir, "sasldb2")
        self._write("sasl/smtpd.conf", "\n".join([
            "pwcheck_method: auxprop",
            "auxprop_plugin: sasldb",
            "sasldb_path: " + db,
            "mech_list: PLAIN LOGIN", ""]))
        subprocess.run(["saslpasswd2", "-f", db, "-p", "-c", "-u", REALM,
                        self.user], input=password.encode(), check=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=self.timeout)
        shutil.chown(db, "postfix", "postfix")
        os.chmod(db, 0o600)

    def main_cf(self):
        return "\n".join(self.common_main_cf("smarthost.test") + [
            "smtpd_tls_cert_file = " + self.cert,
            "smtpd_tls_key_file = " + self.key,
            "smtpd_tls_security_level = encrypt",
            "smtpd_tls_auth_only = yes",
            "smtpd_tls_loglevel = 1",
            "smtpd_sasl_auth_enable = yes",
            "smtpd_sasl_type = cyrus",
            "smtpd_sasl_path = smtpd",
            "cyrus_sasl_config_path = " + self.sasl,
            "smtpd_sasl_local_domain = " + REALM,
            "smtpd_sasl_security_options = noanonymous",
            # Only the SASL account may send; loopback is not trusted.
            "mynetworks = 127.0.0.1/32",
            "smtpd_relay_restrictions = permit_sasl_authenticated, reject",
            "smtpd_recipient_restrictions = check_recipient_access "
            "texthash:%s/rcpt_access, permit_sasl_authenticated, reject"
            % self.etc,
            "smtpd_data_restrictions = check_client_access "
            "texthash:%s/client_hold" % self.etc,
            ""])

    def queued(self):
        """{queue id: {"queue_name", "sender", "recipients": [address]}}
        of every message in Postfix's queues."""
        p = self._run(["postqueue", "-c", self.etc, "-j"])
        if p.returncode != 0:
            raise RuntimeError("postqueue: %s" %
                               p.stdout.decode(errors="replace"))
        out = {}
        for line in p.stdout.decode().splitlines():
            if line.strip():
                q = json.loads(line)
                out[q["queue_id"]] = {
                    "queue_name": q["queue_name"], "sender": q["sender"],
                    "recipients": [r["address"] for r in q["recipients"]]}
        return out

    def content(self, queue_id):
        """The header and body of a queued message, as postcat shows
        them."""
        p = self._run(["postcat", "-c", self.etc, "-h", "-b", "-q",
                       queue_id])
        if p.returncode != 0:
            raise RuntimeError("postcat %s: %s" %
                               (queue_id, p.stdout.decode(errors="replace")))
        return p.stdout.decode(errors="replace")
