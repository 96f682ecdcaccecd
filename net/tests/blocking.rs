//! The blocking `std::net` adapter runs the same core: our echo pair through
//! it, and across it and the tokio adapter both ways.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use echo_core::{ClientConfig, ClientEvent, Connection, EchoClient, EchoFactory, WaterMarks};
use echo_net::{
    AnyListener, ClientOptions, Connected, EchoServer, ServerOptions, TokioSpawner, blocking,
    echo_message,
};

fn message() -> Vec<u8> {
    (0..1_000_000u32).map(|i| (i * 7 % 253) as u8).collect()
}

/// A blocking echo client: returns the verified echo, or the failure.
fn blocking_echo(addr: std::net::SocketAddr, message: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    let (host, peer) = (stream.local_addr().unwrap(), stream.peer_addr().unwrap());
    let config = ClientConfig {
        idle_timeout: Some(Duration::from_secs(10)),
        ..ClientConfig::default()
    };
    let client = EchoClient::message(message.to_vec(), config, Instant::now());
    let mut conn = Connection::new(client, host, peer, WaterMarks::default(), Instant::now());
    let (mut echoed, mut outcome) = (Vec::new(), None);
    blocking::drive(&mut stream, &mut conn, |event| match event {
        ClientEvent::Echoed(bytes) => echoed.extend_from_slice(&bytes),
        ClientEvent::Done { .. } => outcome = Some(Ok(())),
        ClientEvent::Failed(e) => outcome = Some(Err(e.to_string())),
        _ => {}
    })
    .map_err(|e| e.to_string())?;
    outcome.unwrap_or(Err("no outcome".into())).map(|()| echoed)
}

fn blocking_server() -> (std::net::SocketAddr, Arc<Mutex<EchoFactory>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let factory = Arc::new(Mutex::new(EchoFactory::default()));
    let shared = Arc::clone(&factory);
    std::thread::spawn(move || blocking::serve(&listener, &shared, WaterMarks::default()));
    (addr, factory)
}

fn wait_idle(factory: &Mutex<EchoFactory>) {
    let start = Instant::now();
    while factory.lock().unwrap().open_connections() != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "count never returned to 0"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn blocking_client_against_blocking_server() {
    let (addr, factory) = blocking_server();
    let m = message();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || blocking_echo(addr, &m))
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().unwrap() == m);
    }
    wait_idle(&factory);
    assert_eq!(factory.lock().unwrap().accepted(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_client_against_blocking_server() {
    let (addr, factory) = blocking_server();
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connected = Connected {
        host: s.local_addr().unwrap(),
        peer: s.peer_addr().unwrap(),
        stream: s,
    };
    let echo = echo_message(connected, Bytes::from(message()), ClientOptions::default())
        .await
        .unwrap();
    assert!(echo == message());
    tokio::task::spawn_blocking(move || wait_idle(&factory))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_client_against_tokio_server() {
    let endpoint = "tcp:0:interface=127.0.0.1".parse().unwrap();
    let listener = AnyListener::bind(&endpoint).await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let server = EchoServer::new(ServerOptions::default());
    let accept = server.clone();
    tokio::spawn(async move { accept.serve(listener, TokioSpawner).await });
    let echo = tokio::task::spawn_blocking(move || blocking_echo(addr, &message()))
        .await
        .unwrap()
        .unwrap();
    assert!(echo == message());
}
