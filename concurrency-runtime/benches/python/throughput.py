# Reference program: trivial-task throughput of Python's executors, to compare with
# `cargo run --release --example throughput` (same task count, same pool sizes).
#
# Prints "threads <tasks> <seconds>" and "processes <tasks> <seconds>": the time to
# submit that many trivial tasks and collect every result, on a warm pool.
import concurrent.futures
import sys
import time


def trivial(n):
    return n * 2


def measure(executor, tasks):
    # Warm the pool (threads or worker processes started) before timing.
    list(executor.map(trivial, range(executor._max_workers * 2)))
    start = time.perf_counter()
    futures = [executor.submit(trivial, n) for n in range(tasks)]
    results = [future.result() for future in futures]
    elapsed = time.perf_counter() - start
    assert results == [n * 2 for n in range(tasks)]
    return elapsed


def main():
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with concurrent.futures.ThreadPoolExecutor() as executor:
        print(f"threads {tasks} {measure(executor, tasks):.6f}")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2) as executor:
        print(f"processes {tasks} {measure(executor, tasks):.6f}")


if __name__ == "__main__":
    main()
