use concurrency_runtime::io_task;

struct Client;

impl Client {
    #[io_task]
    async fn fetch(&self) -> u32 {
        1
    }
}

fn main() {}
