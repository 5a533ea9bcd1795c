# Reference program: the article's example (see ../../../examples for the Rust port).
import multiprocessing
import time


def cpu_bound_task(n):
    print(f"Starting CPU-bound task {n}...")
    result = sum(i * i for i in range(10**7))
    print(f"Finished CPU-bound task {n}.")
    return result


def main_multiprocessing():
    start_time = time.time()
    processes = []
    for i in range(3):
        process = multiprocessing.Process(target=cpu_bound_task, args=(i,))
        processes.append(process)
        process.start()
    for process in processes:
        process.join()
    print(f"Total multiprocessing time: {time.time() - start_time:.2f}s")


if __name__ == "__main__":
    main_multiprocessing()
