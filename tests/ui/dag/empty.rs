use concurrency_runtime::run_concurrently;

fn main() {
    let () = run_concurrently!(dag {});
}
