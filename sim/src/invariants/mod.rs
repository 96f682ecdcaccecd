//! What must hold in a TCP case, each a named unit in a file of its own:
//! at every step of the simulation ([`EVERY_STEP`]) and once it has run
//! ([`AFTER_RUN`]). A new property is one more file and one more line in
//! one of the two lists.

mod books;
mod buffers;
mod limit;
mod log;
mod memory;
mod panics;

use crate::case::Case;
use crate::world::World;

/// What a run left to be judged.
pub(crate) struct Observed<'a> {
    /// Its world: servers, events, client attempts, shutdown outcome.
    pub(crate) world: &'a World,
    /// The server's captured log.
    pub(crate) log: &'a str,
}

/// One property of every step.
type StepInvariant = fn(&Case, &World) -> Result<(), String>;

/// What must hold after every step, in the order they are checked.
const EVERY_STEP: &[(&str, StepInvariant)] = &[("panics", panics::check), ("limit", limit::check)];

/// Checks every property in [`EVERY_STEP`]; the first violated one is named.
pub(crate) fn every_step(case: &Case, world: &World) -> Result<(), String> {
    for (name, check) in EVERY_STEP {
        check(case, world).map_err(|violation| format!("{name}: {violation}"))?;
    }
    Ok(())
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
