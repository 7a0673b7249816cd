"""Summarise an ``ncu --page source --csv --print-source sass`` export ($OUT/source.csv) of one
kernel: the header, the SASS opcode mix (instructions executed by opcode) and the lines holding
the most warp-stall samples, so a multi-megabyte export comes back as a page.
    python3 scripts/probes/ncu_source_summary.py [top lines]"""
import collections
import csv
import os
import sys

rows = list(csv.reader(open(os.path.join(os.environ["OUT"], "source.csv"))))
head_at = next(i for i, r in enumerate(rows) if any("Source" == c or "Address" == c for c in r))
head = rows[head_at]
print("columns:", head)
body = [r for r in rows[head_at + 1:] if len(r) == len(head)]


def col(*words):
    return next((i for i, c in enumerate(head) if all(w in c for w in words)), None)


src, executed = col("Source"), col("Instructions Executed")
samples = col("Warp Stall Sampling (All")
if samples is None:
    samples = col("Sampling")


def num(value):
    try:
        return float(value.replace(",", ""))
    except ValueError:
        return 0.0


mix = collections.Counter()
for r in body:
    op = r[src].strip().split(" ")[0] if r[src].strip() else "?"
    if op.startswith("@"):
        op = r[src].strip().split(" ")[1]
    mix[op.split(".")[0]] += num(r[executed]) if executed is not None else 1
total = sum(mix.values())
print(f"executed {total:.4g}")
for op, n in mix.most_common(30):
    print(f"  {op:10s} {n:12.4g} {100 * n / total:5.1f}%")
if samples is not None:
    all_samples = sum(num(r[samples]) for r in body)
    print(f"stall samples {all_samples:.4g}; top lines:")
    stall_cols = [i for i, c in enumerate(head) if c.startswith("stall_") or "Stall" in c]
    top = sorted(body, key=lambda r: -num(r[samples]))[: int(sys.argv[1]) if len(sys.argv) > 1 else 60]
    for r in top:
        reasons = sorted(((num(r[i]), head[i]) for i in stall_cols if i != samples and num(r[i]) > 0), reverse=True)[:3]
        print(f"{100 * num(r[samples]) / all_samples:5.2f}% {r[src][:70]:70s} "
              + " ".join(f"{name[:26]}={v:g}" for v, name in reasons))
