//! A benchmark baseline on a completion runtime: monoio's own
//! `examples/echo.rs`, as its authors show it (a thread-per-core runtime on
//! io_uring, one task per connection, an owned 8 KiB buffer read into and
//! written back with `write_all`), with `TCP_NODELAY` as ours sets it.
//! Usage: `baseline_monoio_echo [ADDR]`. Built by `scripts/bench.sh`
//! (feature `baseline-monoio`).

use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};

#[monoio::main(timer_enabled = true)]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:50002".to_string());
    let listener = TcpListener::bind(&addr).expect("bind");
    println!("Listening on: {addr}");
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                monoio::spawn(echo(stream));
            }
            Err(e) => {
                eprintln!("accept failed: {e}");
                return;
            }
        }
    }
}

async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    let mut res;
    loop {
        (res, buf) = stream.read(buf).await;
        if res? == 0 {
            return Ok(());
        }
        (res, buf) = stream.write_all(buf).await;
        res?;
        buf.clear();
    }
}
