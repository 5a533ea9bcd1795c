use concurrency_runtime::run_concurrently;

async fn run() {
    run_concurrently!(async;).await;
}

fn main() {}
