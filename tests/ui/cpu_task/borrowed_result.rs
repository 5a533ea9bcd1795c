use concurrency_runtime::cpu_task;

#[cpu_task]
fn longest(words: Vec<String>) -> &'static mut str {
    Box::leak(words.concat().into_boxed_str())
}

#[cpu_task]
fn first<'a>(_words: Vec<String>) -> &'a str {
    ""
}

fn main() {}
