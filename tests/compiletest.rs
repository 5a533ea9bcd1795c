//! Compile-fail cases: every documented misuse, one per file, with the exact
//! message rustc prints. Regenerate with `TRYBUILD=overwrite` and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    for folder in ["cpu_task", "dag", "io_task", "options", "run_concurrently"] {
        cases.compile_fail(format!("ui/{folder}/*.rs"));
    }
    if cfg!(feature = "process") {
        cases.compile_fail("ui/process/*.rs");
    } else {
        // `cargo test --no-default-features`: a process task says to enable it.
        cases.compile_fail("ui/no_process/*.rs");
    }
}
