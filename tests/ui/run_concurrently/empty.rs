use concurrency_runtime::run_concurrently;

fn main() {
    run_concurrently!();
    // No "unreachable statement" warning for what follows.
    let after = 1;
    let _ = after;
}
