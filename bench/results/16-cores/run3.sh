#!/bin/bash
# Third 16-core run, final code: every collective on 16 and 8 ranks, each transport twice.
B=${ONECOPY:-.dev/onecopy}
out=${OUT:-/tmp/out}; mkdir -p $out
exec 2> $out/log.txt
nproc >&2; uname -r >&2
SIZES=8,1K,64K,1M,8M
run() { # label file args...
  local label=$1 file=$2; shift 2
  echo "## $label" >> $out/$file
  timeout 150 "$@" --format json >> $out/$file
}
for n in 16 8; do
  for round in 1 2; do
    for t in auto cma-read shm-copy; do
      run "n=$n round=$round t=$t" coll.txt $B bench coll -n $n --transports $t --sizes $SIZES --budget-ms 150
    done
  done
done
ls -la $out >&2
