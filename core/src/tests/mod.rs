mod client;
mod connection;
mod endpoint;
mod pair;
mod server;
mod util;
