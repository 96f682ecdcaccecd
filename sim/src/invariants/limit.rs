//! The connection limit holds at every step: the newest server never has
//! more connections open than `--max-connections`, not even for a moment
//! between an accept and its refusal.

use crate::case::Case;
use crate::world::World;

pub(super) fn check(case: &Case, world: &World) -> Result<(), String> {
    if let (Some(limit), Some(server)) =
        (case.server.max_connections, world.servers.borrow().last())
    {
        let open = server.open_connections();
        if open > limit {
            return Err(format!("{open} connections open, above the limit {limit}"));
        }
    }
    Ok(())
}
