//! Reporters: each turns the one result ([`Summary`](crate::model::Summary)
//! or [`Run`](crate::model::Run)) into one output, and none measures
//! anything (vegeta's `reporters.go`).

pub mod hgrm;
pub mod json;
pub mod text;
