//! Compile-fail cases: every documented misuse, one per file, with the exact
//! message rustc prints. Regenerate with `TRYBUILD=overwrite` and review the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/*/*.rs");
}
