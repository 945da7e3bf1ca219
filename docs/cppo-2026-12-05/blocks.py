import csv, os, sys
# per 1e5-step block mean of a column: [P=digits] blocks.py COL progress.csv...
col, p = sys.argv[1], int(os.environ.get("P", "1"))
for f in sys.argv[2:]:
    rows = list(csv.DictReader(open(f)))
    b = {}
    for r in rows:
        b.setdefault((int(r["global_step"]) - 1) // 100000, []).append(float(r[col]))
    print(f.split("/")[-2][:40], " ".join(f"{sum(v) / len(v):.{p}f}" for k, v in sorted(b.items())))
