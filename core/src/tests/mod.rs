mod client;
mod connection;
mod datagram;
mod endpoint;
mod fuzz;
mod pair;
mod server;
mod util;
