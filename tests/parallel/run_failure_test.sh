#!/usr/bin/env bash
# Failure test: runs failure_probe under mpirun and checks that the whole job ends non-zero within
# the limit, with the failing rank's message on stderr.
# usage: run_failure_test.sh MPIEXEC NP PROBE MODE [LIMIT_S]
set -u
mpiexec=$1; np=$2; probe=$3; mode=$4; limit=${5:-10}
out=$(mktemp); trap 'rm -f "$out"' EXIT
start=$(date +%s.%N)
# The outer timeout only keeps a broken build from hanging ctest; the check below is the real limit.
timeout --signal=KILL 60 "$mpiexec" --allow-run-as-root --oversubscribe -np "$np" "$probe" "$mode" >"$out" 2>&1
rc=$?
elapsed=$(echo "$(date +%s.%N) - $start" | bc)
cat "$out"
echo "mpirun exit code $rc after ${elapsed} s (limit ${limit} s)"
fail=0
if [ "$rc" -eq 0 ]; then echo "FAIL: the job exited 0"; fail=1; fi
if [ "$rc" -eq 137 ]; then echo "FAIL: the job hung and was killed"; fail=1; fi
if [ "$(echo "$elapsed > $limit" | bc)" -eq 1 ]; then echo "FAIL: took longer than ${limit} s"; fail=1; fi
if ! grep -q "rank 1 on .*injected" "$out"; then echo "FAIL: no message from rank 1"; fail=1; fi
exit $fail
