#!/usr/bin/env bash
# Round 167 (session 19): longer studies (the sessions since the anchored forward ran 6 trials) for
# both target shapes' forward and backward (each study starts from the stored winner).
export KERNELGEN_CACHE_DIR=/tmp/kg-cache
exec > >(tee $OUT/log.txt) 2>&1
cp tuned/h100.json $OUT/h100.json
S='B=8,T=4096,HQ=16,H=16,D=128,W=512;B=1,T=65536,HQ=16,H=16,D=128,W=512'
echo "## tune fwd"; timeout 280 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel fwd --shapes "$S" --trials 30 --out $OUT/h100.json 2>&1 | grep -v -i warn | tail -25 | cut -c1-220
echo "## tune bwd"; timeout 280 python3 -m kernelgen.cli tune --gpu h100 --op sliding_window_attention --kernel bwd --shapes "$S" --trials 20 --out $OUT/h100.json 2>&1 | grep -v -i warn | tail -25 | cut -c1-220
