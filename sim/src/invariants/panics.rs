//! No task panics: a panic in any spawned task (a connection's, the accept
//! loop's) fails the case at the step it happened, with its message.

use crate::case::Case;
use crate::world::World;

pub(super) fn check(_case: &Case, world: &World) -> Result<(), String> {
    match world.shared.panics.borrow().first() {
        Some(panic) => Err(format!("panic in a spawned task: {panic}")),
        None => Ok(()),
    }
}
