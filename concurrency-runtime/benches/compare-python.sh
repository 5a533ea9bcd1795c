#!/usr/bin/env bash
# Runs the Python reference programs (benches/python/) and their Rust ports
# (examples/) on this machine and prints one table, side by side, with the ratios.
#
#   bash concurrency-runtime/benches/compare-python.sh [tasks]
#
# Needs python3 and cargo. Wall times of whole programs include start-up; the
# throughput rows time only the tasks, on warm pools.
set -euo pipefail
cd "$(dirname "$0")/../.."
tasks="${1:-10000}"
cargo build --release -q -p concurrency-examples --examples
python3 - "$tasks" <<'PY'
import subprocess
import sys
import time

tasks = sys.argv[1]
py = "concurrency-runtime/benches/python"
rust = "target/release/examples"


def wall(command):
    """Best of 3 wall times of a whole program, in seconds."""
    best = None
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return best


def throughput(command):
    """The program's own `<kind> <tasks> <seconds>` lines, best of 3."""
    best = {}
    for _ in range(3):
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            kind, _, seconds = line.split()
            best[kind] = min(best.get(kind, float("inf")), float(seconds))
    return best


def fmt(seconds):
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


rows = []
for name, what in [
    ("seed_asyncio", "3 fetches (asyncio vs async io tasks)"),
    ("seed_threading", "3 blocking downloads (threads vs blocking io tasks)"),
    ("seed_multiprocessing", "3 x sum of i*i below 10^7 (processes vs process tasks)"),
]:
    rows.append((what, wall(["python3", f"{py}/{name}.py"]), wall([f"{rust}/{name}"])))

python = throughput(["python3", f"{py}/throughput.py", tasks])
ours = throughput([f"{rust}/throughput", tasks])
rows.append((f"{tasks} trivial tasks: ThreadPoolExecutor vs blocking io tasks",
             python["threads"], ours["threads"]))
rows.append((f"{tasks} trivial tasks: ProcessPoolExecutor(2) vs process tasks (pool of 2)",
             python["processes"], ours["processes"]))

print(f"| workload | Python | Rust (this crate) | Python / Rust |")
print(f"|---|---|---|---|")
for what, p, r in rows:
    print(f"| {what} | {fmt(p)} | {fmt(r)} | {p / r:.1f}x |")
PY
