"""Run every bench/bench_*.py and print one table of their figures.

Each benchmark is a plain script that measures against a bare baseline in the same run,
prints its own human-readable table, and one JSON line per figure:
{"bench": ..., "metric": ..., "value": ..., "unit": ..., "baseline": ..., "ratio": ..., "target": ...}
Usage: python bench/run_all.py [NAME ...]   (names filter the scripts, e.g. `frames`)
"""
import json, subprocess, sys, time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(filters):
    scripts = sorted(HERE.glob("bench_*.py"))
    if filters: scripts = [s for s in scripts if any(f in s.stem for f in filters)]
    rows, failed = [], []
    for s in scripts:
        print(f"=== {s.name}", flush=True)
        t0 = time.time()
        r = subprocess.run([sys.executable, str(s)], capture_output=True, text=True)
        print(r.stdout, end="")
        if r.returncode != 0:
            print(r.stderr, end="", file=sys.stderr)
            failed.append(s.name)
        for line in r.stdout.splitlines():
            line = line.strip()
            if line.startswith("{") and '"bench"' in line:
                try: rows.append(json.loads(line))
                except json.JSONDecodeError: pass
        print(f"    ({time.time() - t0:.0f} s)", flush=True)
    def fmt(x):
        if x is None: return ""
        return f"{x:.3g}" if isinstance(x, float) else str(x)
    cols = ["bench", "metric", "value", "unit", "baseline", "ratio", "target"]
    table = [[fmt(r.get(c)) for c in cols] for r in rows]
    w = [max([len(c)] + [len(t[i]) for t in table]) for i, c in enumerate(cols)]
    print("\n" + "  ".join(c.ljust(w[i]) for i, c in enumerate(cols)))
    print("  ".join("-" * x for x in w))
    for t in table: print("  ".join(v.ljust(w[i]) for i, v in enumerate(t)))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
