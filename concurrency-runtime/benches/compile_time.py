#!/usr/bin/env python3
"""Compile time of a user crate: the library against the same code written by hand.

Generates, in a scratch workspace, two crates that do the same work:

- `with_library`: FUNCTIONS annotated functions (async io, blocking io and cpu tasks,
  in the proportions 2:1:2) and SITES `run_concurrently!` call sites, half of them
  synchronous (a group of one task of each kind) and half async (three async tasks,
  awaited);
- `by_hand`: the same functions as plain `fn`/`async fn`, and each call site written
  with tokio and rayon directly (`Handle::block_on` of a `join!` of the async task, a
  `spawn_blocking` and a `rayon::spawn` answering on a oneshot; `join!` of the three
  async tasks).

Dependencies are built once; then each round rebuilds each crate alone (its source
touched), alternating the two, and times `cargo build --release` and `cargo check`.
Prints each side's median per measure and the min, median and max of the per-round
ratios.

    python3 concurrency-runtime/benches/compile_time.py [--functions 100] [--sites 20] [--rounds 5]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kinds(functions):
    """The kind of each function: 2 async io, 1 blocking io, 2 cpu, in turn."""
    cycle = ["async", "async", "blocking", "cpu", "cpu"]
    return [cycle[index % len(cycle)] for index in range(functions)]


def body(kind, index):
    if kind == "async":
        return f"tokio::task::yield_now().await;\n    x.wrapping_add({index})"
    if kind == "blocking":
        return f"std::hint::black_box(x ^ {index})"
    return f"(0..x % 64).fold({index}u64, |acc, i| acc.wrapping_mul(31).wrapping_add(i))"


def signature(kind, index):
    prefix = "async fn" if kind == "async" else "fn"
    return f"{prefix} f{index}(x: u64) -> u64"


def by_kind(kinds_list):
    found = {"async": [], "blocking": [], "cpu": []}
    for index, kind in enumerate(kinds_list):
        found[kind].append(index)
    return found


def pick(indices, site, offset=0):
    return indices[(site * 3 + offset) % len(indices)]


def library_crate(functions, sites):
    kinds_list = kinds(functions)
    found = by_kind(kinds_list)
    out = ["use concurrency_runtime::{cpu_task, io_task, run_concurrently};", ""]
    for index, kind in enumerate(kinds_list):
        attribute = "#[cpu_task]" if kind == "cpu" else "#[io_task]"
        out += [attribute, f"pub {signature(kind, index)} {{", f"    {body(kind, index)}", "}", ""]
    out += call_sites(
        sites,
        found,
        lambda a, b, c: [
            f"    let (a, b, c) = run_concurrently!(f{a}(x), f{b}(x), f{c}(x));",
            "    a ^ b ^ c",
        ],
        lambda a, b, c: [f"    let (a, b, c) = run_concurrently!(async; f{a}(x), f{b}(x), f{c}(x)).await;"],
    )
    return "\n".join(out)


def call_sites(sites, found, sync_body, async_body):
    """The call sites: even ones synchronous (an async, a blocking and a cpu task),
    odd ones async (three async tasks); each side writes the bodies its way (a
    synchronous body whole, an async one up to its last line, `a ^ b ^ c`)."""
    out = []
    for site in range(sites):
        if site % 2 == 0:
            a, b, c = pick(found["async"], site), pick(found["blocking"], site), pick(found["cpu"], site)
            out += [f"pub fn site{site}(x: u64) -> u64 {{", *sync_body(a, b, c)]
        else:
            a, b, c = (pick(found["async"], site, offset) for offset in range(3))
            out += [f"pub async fn site{site}(x: u64) -> u64 {{", *async_body(a, b, c), "    a ^ b ^ c"]
        out += ["}", ""]
    return out


def hand_crate(functions, sites):
    kinds_list = kinds(functions)
    found = by_kind(kinds_list)
    out = [
        "use std::sync::OnceLock;",
        "",
        "fn runtime() -> &'static tokio::runtime::Runtime {",
        "    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();",
        "    RUNTIME.get_or_init(|| {",
        "        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect(\"runtime\")",
        "    })",
        "}",
        "",
    ]
    for index, kind in enumerate(kinds_list):
        out += [f"pub {signature(kind, index)} {{", f"    {body(kind, index)}", "}", ""]
    out += call_sites(
        sites,
        found,
        lambda a, b, c: [
            "    runtime().block_on(async move {",
            f"        let blocking = tokio::task::spawn_blocking(move || f{b}(x));",
            "        let (sender, receiver) = tokio::sync::oneshot::channel();",
            f"        rayon::spawn(move || {{ let _ = sender.send(f{c}(x)); }});",
            f"        let (a, b, c) = tokio::join!(f{a}(x), blocking, receiver);",
            "        a ^ b.expect(\"blocking task\") ^ c.expect(\"cpu task\")",
            "    })",
        ],
        lambda a, b, c: [f"    let (a, b, c) = tokio::join!(f{a}(x), f{b}(x), f{c}(x));"],
    )
    return "\n".join(out)


def workspace(scratch, functions, sites):
    tokio_features = '["rt", "rt-multi-thread", "sync", "time", "macros"]'
    (scratch / "Cargo.toml").write_text(
        '[workspace]\nmembers = ["with_library", "by_hand"]\nresolver = "2"\n\n'
        "[profile.release]\ndebug = false\n"
    )
    sides = {
        "with_library": (
            f'concurrency-runtime = {{ path = "{ROOT / "concurrency-runtime"}" }}\n'
            f"tokio = {{ version = \"1\", features = {tokio_features} }}\n",
            library_crate(functions, sites),
        ),
        "by_hand": (
            f"tokio = {{ version = \"1\", features = {tokio_features} }}\nrayon = \"1\"\n",
            hand_crate(functions, sites),
        ),
    }
    for name, (dependencies, source) in sides.items():
        (scratch / name / "src").mkdir(parents=True, exist_ok=True)
        (scratch / name / "Cargo.toml").write_text(
            f'[package]\nname = "{name}"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n'
            f"[dependencies]\n{dependencies}"
        )
        (scratch / name / "src" / "lib.rs").write_text(source)
    # The same versions of the shared dependencies as this repository uses.
    lock = ROOT / "Cargo.lock"
    if lock.exists():
        (scratch / "Cargo.lock").write_text(lock.read_text())


def cargo(scratch, *args):
    # Without incremental compilation: a touched file with unchanged contents would
    # otherwise be answered from the cache, and the figure would be the cache's.
    subprocess.run(
        ["cargo", *args],
        cwd=scratch,
        env={**os.environ, "CARGO_INCREMENTAL": "0"},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def timed(scratch, crate, command):
    source = scratch / crate / "src" / "lib.rs"
    os.utime(source)
    started = time.monotonic()
    cargo(scratch, *command, "-p", crate)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--functions", type=int, default=100)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", help="generate into this folder and keep it")
    options = parser.parse_args()
    scratch = Path(options.keep or tempfile.mkdtemp(prefix="compile-time-"))
    scratch.mkdir(parents=True, exist_ok=True)
    workspace(scratch, options.functions, options.sites)
    print(f"{options.functions} functions, {options.sites} call sites, in {scratch}", flush=True)
    measures = {"build --release": ["build", "--release"], "check": ["check"]}
    for command in measures.values():
        cargo(scratch, *command)  # dependencies, and a first build of both sides
        for crate in ("with_library", "by_hand"):
            timed(scratch, crate, command)  # a round not counted: caches settle
    results = {name: ([], []) for name in measures}
    for round_number in range(options.rounds):
        print(f"round {round_number + 1}/{options.rounds}", file=sys.stderr, flush=True)
        for name, command in measures.items():
            ours, theirs = results[name]
            ours.append(timed(scratch, "with_library", command))
            theirs.append(timed(scratch, "by_hand", command))
    print(f"{'measure':<18} {'library':>9} {'by hand':>9}   ratio per round: min  median  max")
    for name, (ours, theirs) in results.items():
        ratios = sorted(a / b for a, b in zip(ours, theirs))
        print(
            f"{name:<18} {statistics.median(ours):>8.2f}s {statistics.median(theirs):>8.2f}s"
            f"   {ratios[0]:.2f}  {statistics.median(ratios):.2f}  {ratios[-1]:.2f}"
        )


if __name__ == "__main__":
    main()
