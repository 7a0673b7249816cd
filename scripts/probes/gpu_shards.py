"""Runs test files on the GPU in parallel shards (compilation is CPU-bound; the GPU is shared).

Usage: python3 scripts/probes/gpu_shards.py SHARDS LIMIT_S tests/test_a.py tests/test_b.py ... (or one ids.txt)
TB=short for longer tracebacks; each shard's whole output goes to $OUT/shardK.txt.
Collects the node ids, deals them round-robin into SHARDS pytest processes, each under a
timeout, and prints every failure and each shard's summary line.
"""
import os
import subprocess
import sys

shards, limit, files = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
if len(files) == 1 and files[0].endswith(".txt"):   # a list of node ids, one a line
    ids = [line.strip() for line in open(files[0]) if line.strip()]
else:
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                                *files], capture_output=True, text=True).stdout.splitlines()
    ids = [line for line in collected if "::" in line]
tb = os.environ.get("TB", "line")
out_dir = os.environ.get("OUT")
print(f"{len(ids)} tests in {len(files)} files, {shards} shards", flush=True)
procs = []
for k in range(shards):
    part = ids[k::shards]
    if part:
        procs.append(subprocess.Popen(["timeout", str(limit), sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                       f"--tb={tb}", "-rf", *part], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
for k, proc in enumerate(procs):
    out, _ = proc.communicate()
    if out_dir:
        with open(os.path.join(out_dir, f"shard{k}.txt"), "w") as f:
            f.write(out)
    lines = out.splitlines()
    shown = [l for l in lines if l.startswith("FAILED") or l.startswith("ERROR") or " passed" in l or " failed" in l]
    print(f"-- shard {k} rc={proc.returncode}", *[l[:300] for l in shown], sep="\n", flush=True)
