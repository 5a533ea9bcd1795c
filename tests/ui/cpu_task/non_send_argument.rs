use std::cell::RefCell;
use std::rc::Rc;

use concurrency_runtime::cpu_task;

#[cpu_task]
fn crunch(state: Rc<RefCell<u64>>) -> u64 {
    *state.borrow()
}

fn main() {}
