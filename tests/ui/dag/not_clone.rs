use concurrency_runtime::{cpu_task, io_task, run_concurrently};

struct Page(String);

#[io_task]
async fn fetch(n: u64) -> Page {
    Page(n.to_string())
}

#[cpu_task]
fn count_words(page: Page) -> usize {
    page.0.split_whitespace().count()
}

#[cpu_task]
fn hash(page: Page) -> usize {
    page.0.len()
}

fn main() {
    let _ = run_concurrently!(dag {
        let page = fetch(1);
        let words = count_words(page);
        let digest = hash(page);
        (words, digest)
    });
}
