#!/usr/bin/env bash
# Installs the Debian 12 packages Shivneri builds, tests and benchmarks
# with, when any is missing.  Idempotent and quiet when all are there.
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
      libevent-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev
      libssl-dev libgmime-3.0-dev libinih-dev libcmocka-dev libcjson-dev
      libhttp-parser-dev libcrypt-dev libidn2-dev
      python3 python3-pytest python3-aiosmtpd python3-h2 openssl sqlite3
      valgrind wrk curl strace swaks msmtp postfix libsasl2-modules
      sasl2-bin chromium)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
# Postfix is here for SMTP tests and the benchmark, which start their own
# instances with their own config_directory; the system one must stay
# unconfigured ("No configuration": no main.cf, so nothing listens on 25).
# sasl2-bin is for saslpasswd2 (test_63's smarthost keeps its SASL account
# in a private sasldb); its saslauthd stays off, as Debian ships it.
echo "postfix postfix/main_mailer_type select No configuration" |
	$SUDO debconf-set-selections
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
# Where a service manager started it anyway, stop it and keep it stopped.
if [[ " ${missing[*]} " == *" postfix "* ]]; then
	if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
		$SUDO systemctl disable --now postfix >/dev/null 2>&1 || true
	fi
	$SUDO postfix status >/dev/null 2>&1 && $SUDO postfix stop >/dev/null 2>&1
	true
fi
