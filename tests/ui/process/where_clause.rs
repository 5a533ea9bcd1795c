use concurrency_runtime::cpu_task;

#[cpu_task(process)]
fn total(numbers: Vec<u64>) -> u64
where
    u64: Copy,
{
    numbers.iter().sum()
}

fn main() {
    let _ = total(vec![1]).run();
}
