#!/usr/bin/env bash
# Round 82 (session 11): after the host-only review clean-up (the stack buffer is a placeholder when
# live blocks are read back): the loglinear GPU tests and the tuned configs' times.
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
echo "## tests"; timeout 200 python3 -m pytest -q -x tests/test_loglinear_attention.py -k "gpu" 2>&1 | tail -1
for k in fwd bwd; do
  echo "## $k"; timeout 100 python3 -m kernelgen.tune.probe --template loglinear_attention.$k --shape B=8,T=4096,H=16,K=128,V=128,L=13 --configs '[]' 2>&1 | grep -v -i warn | grep " ms \|rror" | cut -c1-80
done
