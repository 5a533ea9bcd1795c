//! Examples of `concurrency-runtime`: see the `[[example]]` targets.
