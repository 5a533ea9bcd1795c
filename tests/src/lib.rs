//! Integration and compile-fail tests of `concurrency-runtime` (see `[[test]]`).
