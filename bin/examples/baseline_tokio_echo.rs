//! The baseline for benchmarks: tokio's own `examples/echo-tcp.rs`, as it is
//! (multi-thread runtime, one task per connection, read into a 1 KiB buffer,
//! `write_all` back; no `TCP_NODELAY`). Usage: `baseline_tokio_echo [ADDR]
//! [--nodelay]`: with `--nodelay` each accepted socket gets `TCP_NODELAY`, as
//! ours does, so the comparison is like for like.

#![forbid(unsafe_code)]

use std::env;
use std::error::Error;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let addr = env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".to_string());
    let nodelay = env::args().any(|a| a == "--nodelay");
    let listener = TcpListener::bind(&addr).await?;
    println!("Listening on: {addr}");
    loop {
        let (mut socket, _) = listener.accept().await?;
        if nodelay {
            socket.set_nodelay(true)?;
        }
        tokio::spawn(async move {
            let mut buf = vec![0; 1024];
            loop {
                let n = socket
                    .read(&mut buf)
                    .await
                    .expect("failed to read data from socket");
                if n == 0 {
                    return;
                }
                socket
                    .write_all(&buf[0..n])
                    .await
                    .expect("failed to write data to socket");
            }
        });
    }
}
