# Reference program: the article's example (see ../../../examples for the Rust port).
import asyncio
import time


async def fetch_data(delay):
    print(f"Starting fetch for {delay}s...")
    await asyncio.sleep(delay)  # Simulate I/O operation
    print(f"Finished fetch for {delay}s.")
    return f"Data after {delay}s"


async def main_async():
    start_time = time.time()
    results = await asyncio.gather(fetch_data(2), fetch_data(1), fetch_data(3))
    print(f"All data fetched: {results}")
    print(f"Total async time: {time.time() - start_time:.2f}s")


if __name__ == "__main__":
    asyncio.run(main_async())
