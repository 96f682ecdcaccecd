//! What must hold once a TCP case has run, each a named unit in a file of
//! its own, all listed in [`AFTER_RUN`]: a new property is one more file
//! and one more line there. (What must hold at every step, such as the
//! connection limit and panics, is checked by the run as it steps.)

mod books;
mod buffers;
mod log;
mod memory;

use crate::case::Case;
use crate::world::World;

/// What a run left to be judged.
pub(crate) struct Observed<'a> {
    /// Its world: servers, events, client attempts, shutdown outcome.
    pub(crate) world: &'a World,
    /// The server's captured log.
    pub(crate) log: &'a str,
}

/// One property of a finished run.
type Invariant = fn(&Case, &Observed<'_>) -> Result<(), String>;

/// Every property of a finished TCP run, in the order they are checked.
const AFTER_RUN: &[(&str, Invariant)] = &[
    ("buffers", buffers::check),
    ("memory", memory::check),
    ("books", books::check),
    ("log", log::check),
];

/// Checks every property in [`AFTER_RUN`]; the first violated one is named.
pub(crate) fn after_run(case: &Case, seen: &Observed<'_>) -> Result<(), String> {
    for (name, check) in AFTER_RUN {
        check(case, seen).map_err(|violation| format!("{name}: {violation}"))?;
    }
    Ok(())
}
