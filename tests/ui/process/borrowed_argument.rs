use concurrency_runtime::{cpu_task, run_concurrently};

#[cpu_task(process)]
fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

fn main() {
    let n = run_concurrently!(count_words("a b"));
    let _ = n + count_words("c").run();
}
