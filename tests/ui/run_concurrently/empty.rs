use concurrency_runtime::run_concurrently;

fn main() {
    run_concurrently!();
}
