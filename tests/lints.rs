//! The code the macros generate raises no warning in the user's crate, also for
//! one-line bodies (no nested braces that `unused_braces` would flag) and under
//! clippy (CI runs `cargo clippy --all-targets -- -D warnings` on this file too).

#![deny(warnings)]

use concurrency_runtime::{cpu_task, io_task, run_concurrently};

// One line each, as users write short tasks (kept so by `rustfmt::skip`).
#[rustfmt::skip]
mod tasks {
    use super::{cpu_task, io_task};

    #[io_task] pub async fn fetch(n: u64) -> u64 { n + 1 }
    #[io_task] pub fn download(n: u64) -> u64 { n + 2 }
    #[cpu_task] pub fn crunch(n: u64) -> u64 { n + 3 }
    #[cfg(feature = "process")] #[cpu_task(process)] pub fn isolated(n: u64) -> u64 { n + 4 }
    #[cfg(not(feature = "process"))] #[cpu_task] pub fn isolated(n: u64) -> u64 { n + 4 }
    #[cpu_task(retries = 1)] pub fn retried(n: u64) -> u64 { n + 5 }
    #[io_task(timeout = "10s")] pub fn parse(text: String) -> Result<u64, std::num::ParseIntError> { text.parse() }
    #[io_task] pub fn nothing() {}
    #[cpu_task] pub fn boom() -> u64 { panic!("boom") }
    #[io_task] pub async fn boom_async() -> u64 { panic!("boom") }
}

use tasks::{boom, boom_async, crunch, download, fetch, isolated, nothing, parse, retried};

#[rustfmt::skip]
#[test]
fn one_line_tasks_compile_without_warnings_and_run() {
    let (a, b, c, d, e, f) = run_concurrently!(fetch(0), download(0), crunch(0), isolated(0), retried(0), parse("6".into()));
    assert_eq!((a, b, c, d, e, f.ok()), (1, 2, 3, 4, 5, Some(6)));
    assert_eq!(run_concurrently!(try; parse("7".into()), crunch(1)).ok(), Some((7, 4)));
    assert_eq!(run_concurrently!(for (0..3).map(crunch)), [3, 4, 5]);
    nothing().run();
    let (boomed, boomed_async) = run_concurrently!(all; boom(), boom_async());
    assert!(boomed.is_err() && boomed_async.is_err());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (x, y) = runtime.block_on(async { run_concurrently!(async; fetch(1), download(1)).await });
    assert_eq!((x, y), (2, 3));
}

#[rustfmt::skip]
#[test]
fn dag_forms_compile_without_warnings_and_run() {
    let offset = 1;
    let (a, c) = run_concurrently!(dag { let a = fetch(offset); let b = crunch(a); let c = download(a); let _d = isolated(b); (a, c) });
    assert_eq!((a, c), (2, 4));
    let only = run_concurrently!(dag { let x = fetch(0); x });
    assert_eq!(only, 1);
    assert_eq!(run_concurrently!(try; dag { let n = parse("7".into()); let m = crunch(n); m }).ok(), Some(10));
    let (bad, after) = run_concurrently!(all; dag { let bad = boom(); let after = crunch(bad); (bad, after) });
    assert!(bad.is_err() && after.is_err());
    let each = run_concurrently!(dag { let xs = for (0..3).map(crunch); let total = download(xs.len() as u64); (xs, total) });
    assert_eq!(each, (vec![3, 4, 5], 5));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let y = runtime.block_on(async { run_concurrently!(async; dag { let x = fetch(1); let y = download(x); y }).await });
    assert_eq!(y, 4);
    run_concurrently!(dag { let _n = nothing(); });
}
