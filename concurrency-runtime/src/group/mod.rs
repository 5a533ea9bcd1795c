//! The forms of `run_concurrently!`: how a group starts its tasks, polls them
//! together, fails fast or collects every outcome, and turns outcomes into values.
//!
//! - `mode`: the three ways a group reports failures (values, `try;`, `all;`);
//! - `child`: one task of a tuple group;
//! - `tuple`: the tuple form (a list of children in the group's own future);
//! - `collection`: the `for` form (spawned tasks, or one batch of cpu tasks);
//! - `one`: a single task run synchronously (`task.run()`);
//! - `dag`: the `dag { ... }` form (nodes started as their inputs are ready).
//!
//! A new form (a dependency graph, a stream) is a module here over `Child` and the
//! modes.

mod child;
mod collection;
pub(crate) mod dag;
mod mode;
mod one;
mod tuple;

pub use child::Child;
pub use collection::{run_all, run_all_with_progress};
pub(crate) use mode::Mode;
pub(crate) use mode::settle;
pub use mode::{CollectAll, FailFast, Values, settled, value};
pub(crate) use one::run_one;
pub use tuple::{Cons, End, Group};
