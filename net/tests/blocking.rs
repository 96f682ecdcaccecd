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
    let client = EchoClient::message(message.to_vec(), config);
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
        host: s.local_addr().unwrap().into(),
        peer: s.peer_addr().unwrap().into(),
        stream: s,
        handshake: None,
        resumed: false,
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

/// Echoes what it reads until it has read `limit` bytes, then closes (as a
/// server whose grace period just ended would), while the peer may still be
/// sending.
struct EchoThenClose {
    limit: usize,
    read: usize,
}

impl echo_core::Protocol for EchoThenClose {
    type Event = std::convert::Infallible;

    fn data_received(&mut self, data: &[u8], transport: &mut echo_core::Transport, _now: Instant) {
        transport.write(data);
        self.read += data.len();
        if self.read >= self.limit {
            transport.lose_connection();
        }
    }
}

#[test]
fn closing_while_the_peer_keeps_sending_loses_no_echo() {
    use std::io::{Read, Write};
    const LIMIT: usize = 1 << 20;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let host = stream.local_addr().unwrap();
        let protocol = EchoThenClose {
            limit: LIMIT,
            read: 0,
        };
        let mut conn = Connection::new(protocol, host, peer, WaterMarks::default(), Instant::now());
        let _ = blocking::drive(&mut stream, &mut conn, |never| match never {});
    });
    let mut peer = TcpStream::connect(addr).unwrap();
    let sent: Vec<u8> = (0..4 * LIMIT as u32).map(|i| (i % 251) as u8).collect();
    // Keep sending well past the point where the server closes; read only
    // later, so the end of the echo is still in the server's send queue
    // when it closes with our unread bytes in its receive queue. Closing at
    // once there sends a reset that throws that queued echo away.
    let mut writer = peer.try_clone().unwrap();
    let input = sent.clone();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&input);
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut got = Vec::new();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let result = peer.read_to_end(&mut got);
    assert!(result.is_ok(), "{result:?} after {} bytes", got.len());
    assert!(
        got.len() >= LIMIT,
        "only {} of at least {LIMIT} bytes came back",
        got.len()
    );
    assert!(sent.starts_with(&got), "what came back is what was sent");
    drop(peer);
    let _ = sending.join();
}

/// Aborts at once (as the core does for a garbage-sending peer).
struct AbortAtOnce;

impl echo_core::Protocol for AbortAtOnce {
    type Event = std::convert::Infallible;

    fn data_received(&mut self, _data: &[u8], transport: &mut echo_core::Transport, _now: Instant) {
        transport.abort_connection();
    }
}

#[test]
fn an_abort_resets_the_connection() {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut stream, peer) = listener.accept().unwrap();
        let host = stream.local_addr().unwrap();
        let mut conn = Connection::new(
            AbortAtOnce,
            host,
            peer,
            WaterMarks::default(),
            Instant::now(),
        );
        let _ = blocking::drive(&mut stream, &mut conn, |never| match never {});
    });
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.write_all(b"x").unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let result = peer.read(&mut buf);
    assert_eq!(
        result.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset),
        "RST, not FIN"
    );
}

/// The blocking adapter drains the factory's events as the tokio server
/// does: 100,000 connections leave no event queued (it grew by two per
/// connection, forever, before).
#[test]
fn a_long_running_blocking_server_keeps_no_events_queued() {
    let (addr, factory) = blocking_server();
    let mut most = 0;
    for i in 0..100_000u32 {
        let stream = std::net::TcpStream::connect(addr).unwrap();
        // A reset, not a FIN: no TIME_WAIT left per connection, so the
        // ephemeral ports last for all of them.
        socket2::SockRef::from(&stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(stream);
        // Paced to the accept loop: past the listen backlog the kernel
        // drops SYNs, and each retry costs a second.
        while factory.lock().unwrap().accepted() + 64 < u64::from(i) {
            std::thread::yield_now();
        }
        if i % 1_000 == 999 {
            most = most.max(factory.lock().unwrap().queued_events());
        }
    }
    wait_idle(&factory);
    let factory = factory.lock().unwrap();
    // A reset can beat the accept (the kernel then drops the connection
    // from its queue): nearly all, not all, were served.
    assert!(factory.accepted() > 99_000, "{} served", factory.accepted());
    assert_eq!(factory.queued_events(), 0);
    assert!(most < 2_000, "{most} events were queued at once");
}
