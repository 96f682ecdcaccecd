//! The echo protocols of RFC 862: the server and a verifying client.

pub mod client;
pub mod server;
