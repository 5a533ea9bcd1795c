use concurrency_runtime::cpu_task;

#[cpu_task(process)]
fn count_words(text: &str) -> usize {
    text.split_whitespace().count()
}

fn main() {}
