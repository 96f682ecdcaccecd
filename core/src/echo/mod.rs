//! The echo protocols of RFC 862: the server and a verifying client.

pub(crate) mod client;
pub(crate) mod faults;
pub(crate) mod server;
