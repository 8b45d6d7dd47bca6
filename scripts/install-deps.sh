#!/usr/bin/env bash
# Installs the Debian 12 packages Shivneri builds, tests and benchmarks
# with, when any is missing.  Idempotent and quiet when all are there.
set -euo pipefail

PKGS=(build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
      libevent-dev libcurl4-openssl-dev libjansson-dev libsqlite3-dev
      libssl-dev libgmime-3.0-dev libinih-dev libcmocka-dev libcjson-dev
      libhttp-parser-dev
      python3 python3-pytest python3-aiosmtpd python3-h2 openssl sqlite3
      valgrind wrk curl strace)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "install-deps: installing ${missing[*]}"
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
