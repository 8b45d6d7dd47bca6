#!/usr/bin/env bash
# Runs every unit test under valgrind (memcheck, full leak check) and, with
# VALGRIND_SERVER=1, a short server session too.  Exits non-zero on the
# first error.  Suppressions for the libraries' own one-time allocations
# live in scripts/valgrind.supp.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
for t in "$build"/test_*; do
	[ -x "$t" ] || continue
	if valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect \
		--suppressions="$root/scripts/valgrind.supp" "$t" >"$t.vg.log" 2>&1; then
		echo "valgrind: $(basename "$t") clean"
	else
		echo "valgrind: $(basename "$t") FAILED"; tail -60 "$t.vg.log"; status=1
	fi
done
exit $status
