#!/bin/bash
# 16-rank collectives on the lent machine: onecopy's single copy against its own double-copy
# fallback. Writes JSON and logs under $OUT.
B=${ONECOPY:-.dev/onecopy}
out=${OUT:-/tmp/out}; mkdir -p $out
exec > >(tee $out/log.txt) 2>&1
set -x
nproc; uname -r; grep -m1 'model name' /proc/cpuinfo; free -g | head -2
cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null
$B check 2>&1 | tail -4
SIZES=8,1K,64K,1M,8M
# 1. every collective, 16 ranks, single copy (auto, cma-read) vs the double-copy fallback
timeout 200 $B bench coll -n 16 --transports auto,cma-read,shm-copy --sizes $SIZES --budget-ms 40 --format json > $out/coll16.json
# 2. the same with 8 ranks
timeout 100 $B bench coll -n 8 --transports auto,cma-read,shm-copy --sizes $SIZES --budget-ms 40 --format json > $out/coll8.json
# 3. small-message algorithm choice at 16 ranks: post-everything-at-once (default) vs paired steps
timeout 60 env ONECOPY_COLL_LINEAR=0 $B bench coll -n 16 --collectives allreduce,alltoall,allgather --sizes 8,64,1K --budget-ms 40 --format json > $out/paired16.json
# 4. reduce steps with single copy at 16 ranks (copy = combining receive, read, fused)
for step in copy read fused; do
  timeout 60 env ONECOPY_REDUCE=$step $B bench coll -n 16 --collectives reduce --transports cma-read --sizes 64K,1M,8M --budget-ms 40 --format json > $out/reduce16-$step.json
done
ls -la $out
