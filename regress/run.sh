#!/bin/sh
# Runs every unit test (regress/*_test) and every test script
# (regress/t_*.sh).  Each prints PASS:, FAIL: and SKIP: lines; a program
# that exits non-zero without a FAIL line counts as one failure.  The
# last line is "N passed, N failed".
cd "$(dirname "$0")/.." || exit 1
pass=0
fail=0
skip=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for t in regress/*_test regress/t_*.sh; do
	[ -e "$t" ] || continue
	case "$t" in *.c) continue ;; esac
	echo "=== $t"
	start=$(date +%s)
	if [ "${t%.sh}" != "$t" ]; then
		sh "$t" >"$out" 2>&1
	else
		"./$t" >"$out" 2>&1
	fi
	rc=$?
	cat "$out"
	p=$(grep -c '^PASS:' "$out")
	f=$(grep -c '^FAIL:' "$out")
	s=$(grep -c '^SKIP:' "$out")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL: $t exited with status $rc"
		f=1
	fi
	echo "--- $t: $p passed, $f failed, $s skipped ($(( $(date +%s) - start ))s)"
	pass=$((pass + p))
	fail=$((fail + f))
	skip=$((skip + s))
done
echo "$skip skipped"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
