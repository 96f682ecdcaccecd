//! The server's log says what its books say: one line per connection
//! made, lost, refused or denied; warnings thinned as promised; the
//! shutdown's wait announced only when something was open.

use std::sync::PoisonError;

use super::Observed;
use crate::case::Case;

pub(crate) fn check(_case: &Case, seen: &Observed<'_>) -> Result<(), String> {
    let world = seen.world;
    let events = world.events.lock().unwrap_or_else(PoisonError::into_inner);
    crate::logs::check_log(events.iter().map(|(_, event, _)| event), seen.log)?;
    crate::logs::check_throttled_warnings(
        events.iter().map(|(_, event, _)| event),
        world.accept_failures.get(),
        seen.log,
    )?;
    crate::logs::check_shutdown_line(*world.open_at_shutdown.borrow(), seen.log)
}
