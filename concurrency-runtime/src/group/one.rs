//! One task run from synchronous code (`task.run()`), as a group of one.

use super::child::Child;
use super::mode::Mode;
use super::tuple::{Cons, End, Group};
use crate::error::TaskError;
use crate::placement::{Placement, TaskValue};
use crate::runtime::block_on_group;

/// Runs one task from synchronous code, as a group of one (see `task.run()`).
#[inline]
pub(crate) fn run_one<P: Placement, M: Mode<P, Error = TaskError> + 'static>(
    task: TaskValue<P>,
) -> Result<M::Item, TaskError> {
    let group = Group::new(Cons::new(Child::<P, M>::new(task), End::new()), |outcome| {
        outcome.map(|(item, ())| item)
    });
    block_on_group(group.kinds(), group)
}
