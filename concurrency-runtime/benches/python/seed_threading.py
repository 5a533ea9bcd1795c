# Reference program: the article's example (see ../../../examples for the Rust port).
import threading
import time


def download_file(url):
    print(f"Downloading {url}...")
    time.sleep(2)  # Simulate network I/O
    print(f"Finished downloading {url}.")


def main_threading():
    start_time = time.time()
    threads = []
    urls = ["http://example.com/file1", "http://example.com/file2", "http://example.com/file3"]
    for url in urls:
        thread = threading.Thread(target=download_file, args=(url,))
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    print(f"Total threading time: {time.time() - start_time:.2f}s")


if __name__ == "__main__":
    main_threading()
