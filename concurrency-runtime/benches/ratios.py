#!/usr/bin/env python3
"""Prints each benchmark group's medians and the ratio of run_concurrently! to the
hand-written baseline, from criterion's estimates (target/criterion)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
print(f"{'group':<24} {'run_concurrently!':>18} {'hand-written':>14} {'ratio':>7}")
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    medians = {}
    for bench in group.iterdir():
        est = bench / "new" / "estimates.json"
        if est.exists():
            medians[bench.name] = json.loads(est.read_text())["median"]["point_estimate"]
    ours = medians.pop("run_concurrently", None)
    if ours is None or len(medians) != 1:
        continue
    (name, base), = medians.items()
    print(f"{group.name:<24} {ours/1000:>15.2f} µs {base/1000:>11.2f} µs {ours/base:>7.2f}  (vs {name})")
