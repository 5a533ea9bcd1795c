#!/usr/bin/env python3
"""Prints each benchmark group of `cargo bench --bench overhead` as a Markdown table
row: run_concurrently!'s median and min-max per iteration, the hand-written
baseline's, and the ratio of the medians (from target/criterion)."""
import json
import pathlib
import sys

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def fmt(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.0f} ns"


def stats(bench):
    median = json.loads((bench / "new" / "estimates.json").read_text())["median"]["point_estimate"]
    sample = json.loads((bench / "new" / "sample.json").read_text())
    per_iter = [t / i for t, i in zip(sample["times"], sample["iters"])]
    return median, min(per_iter), max(per_iter)


print("| group | run_concurrently! median (min-max) | hand-written median (min-max) | ratio |")
print("|---|---|---|---|")
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    results = {}
    for bench in group.iterdir():
        if (bench / "new" / "estimates.json").exists():
            results[bench.name] = stats(bench)
    ours = results.pop("run_concurrently", None)
    if ours is None or len(results) != 1:
        continue
    (name, base), = results.items()
    print(
        f"| {group.name} | {fmt(ours[0])} ({fmt(ours[1])}-{fmt(ours[2])}) "
        f"| {fmt(base[0])} ({fmt(base[1])}-{fmt(base[2])}) `{name}` | {ours[0] / base[0]:.2f} |"
    )
