//! How a group starts its tasks: what it needs to know about the calling thread,
//! looked up once for the whole group (at its first poll, where its tasks start).

use std::cell::Cell;

use super::seam::Start;
use crate::kind::TaskKind;
use crate::runtime;

/// What a group knows of the thread its tasks start on.
#[derive(Debug)]
pub struct Starter {
    spawn: bool,
    in_tokio: Cell<Option<bool>>,
}

impl Starter {
    /// The starter for a group that starts here, now.
    #[inline]
    pub(crate) fn here() -> Self {
        Starter {
            // A synchronous caller that cannot poll async tasks itself (a rayon worker,
            // or a thread inside another runtime's context) has them spawned instead.
            spawn: runtime::spawn_async_on_embedded(),
            in_tokio: Cell::new(None),
        }
    }

    /// How a task of `kind` starts here.
    #[inline(always)]
    pub(crate) fn start(&self, kind: TaskKind) -> Start {
        if !kind.is_async() {
            Start::Inline
        } else if self.spawn {
            Start::Spawned
        } else {
            let in_tokio = match self.in_tokio.get() {
                Some(known) => known,
                None => {
                    let found = runtime::in_tokio_context();
                    self.in_tokio.set(Some(found));
                    found
                }
            };
            if in_tokio {
                Start::InContext
            } else {
                Start::Inline
            }
        }
    }
}
