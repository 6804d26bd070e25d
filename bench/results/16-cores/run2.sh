#!/bin/bash
# Second 16-core run: each transport twice (run-to-run spread), small-message algorithms by rank
# count, reduce steps. Output: labelled JSON blocks.
B=${ONECOPY:-.dev/onecopy}
out=${OUT:-/tmp/out}; mkdir -p $out
exec 2> $out/log.txt
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
for n in 4 8 16; do
  for round in 1 2; do
    for lin in 0 1024; do
      run "n=$n round=$round linear=$lin" linear.txt env ONECOPY_COLL_LINEAR=$lin $B bench coll -n $n --collectives allreduce,alltoall,allgather --sizes 8,64,1K,8K --budget-ms 100
    done
  done
done
for t in cma-read auto; do
  for step in copy read fused; do
    run "n=16 t=$t step=$step" reduce.txt env ONECOPY_REDUCE=$step $B bench coll -n 16 --collectives reduce --transports $t --sizes 64K,1M,8M --budget-ms 150
  done
done
ls -la $out >&2
