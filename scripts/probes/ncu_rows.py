"""Print the metrics named in $M (comma-separated) of every kernel in $OUT/ncu.csv, an
``ncu --csv --page raw`` log; ncu's own error output ($OUT/ncu.err) when the log holds no rows."""
import csv
import os

out = os.environ["OUT"]
rows = list(csv.reader(open(os.path.join(out, "ncu.csv"))))
head = next((i for i, r in enumerate(rows) if "Kernel Name" in r), None)
if head is None:
    print(open(os.path.join(out, "ncu.err")).read()[-1500:])
    raise SystemExit
names, units = rows[head], rows[head + 1]
wanted = os.environ["M"].split(",")
for r in rows[head + 2:]:
    print(r[names.index("Kernel Name")][:40])
    for n, u, v in zip(names, units, r):
        if n in wanted:
            print(f"  {n} = {v} {u}")
