use concurrency_runtime::run_concurrently;

fn main() {
    let urls = vec!["a".to_string()];
    let _ = run_concurrently!(for urls.into_iter().map(|url| url.len()));
}
