use concurrency_runtime::cpu_task;

#[cpu_task]
fn largest<T: PartialOrd + 'static>(items: Vec<T>) -> Option<T> {
    items.into_iter().next()
}

fn main() {}
