mod client;
mod connection;
mod datagram;
mod endpoint;
#[cfg(feature = "std")]
mod fuzz;
mod pair;
mod server;
mod util;
