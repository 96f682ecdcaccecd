mod client;
mod connection;
mod endpoint;
mod fuzz;
mod pair;
mod server;
mod util;
