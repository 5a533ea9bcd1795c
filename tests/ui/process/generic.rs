use concurrency_runtime::cpu_task;

#[cpu_task(process)]
fn largest<T: PartialOrd + Copy>(items: Vec<T>) -> Option<T> {
    items.first().copied()
}

fn main() {}
