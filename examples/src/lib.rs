//! Examples of `concurrency-runtime`: see the `[[example]]` targets. Shared helpers.

use std::path::PathBuf;

/// A file of this examples package by its absolute path, so that an example finds it
/// from whatever folder it is started in (`cargo run --example` keeps the caller's).
pub fn package_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn package_files_are_found_from_any_working_directory() {
        // The only test of this binary: changing the working directory is safe here.
        std::env::set_current_dir(std::env::temp_dir()).expect("cd");
        let source = std::fs::read_to_string(super::package_file("workflow.rs"))
            .expect("the workflow example's source, from the temporary folder");
        assert!(source.contains("fn main()"));
    }
}
