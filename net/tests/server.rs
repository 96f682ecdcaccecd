//! The echo-net server and client in-process, on loopback and in memory.

use std::time::Duration;

use bytes::Bytes;
use echo_core::{
    ClientConfig, CloseReason, Connection, EchoFactory, Factory, ServerConfig, WaterMarks,
};
use echo_net::{
    AnyListener, ClientOptions, Connected, DriveConfig, EchoServer, NoApp, ServerOptions,
    ShutdownOutcome, TokioSpawner, drive, echo_message, now,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(options: ServerOptions) -> (EchoServer, std::net::SocketAddr) {
    let endpoint = "tcp:0:interface=127.0.0.1".parse().unwrap();
    let listener = AnyListener::bind(&endpoint).await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let server = EchoServer::new(options);
    let accept = server.clone();
    tokio::spawn(async move { accept.serve(listener, TokioSpawner).await });
    (server, addr)
}

async fn wait_open(server: &EchoServer, n: usize) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while server.open_connections() != n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "open count stuck at {} (wanted {n})",
            server.open_connections()
        )
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_and_abrupt_closes_mid_echo_leave_no_count_behind() {
    let (server, addr) = start(ServerOptions::default()).await;
    let mut streams = Vec::new();
    for i in 0..50u8 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&vec![i; 100_000]).await.unwrap_or(());
        streams.push(s);
    }
    wait_open(&server, 50).await;
    for (i, s) in streams.into_iter().enumerate() {
        match i % 3 {
            0 => s.set_zero_linger().unwrap(), // RST on drop
            1 => {
                let (_r, mut w) = s.into_split();
                let _ = w.shutdown().await; // half-close, then drop: RST with unread echoes
                continue;
            }
            _ => {} // close with unread data: RST too
        }
    }
    wait_open(&server, 0).await;
    assert_eq!(server.totals(), (50, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_closed_at_once_and_slots_free_up() {
    let options = ServerOptions {
        config: ServerConfig {
            max_connections: Some(2),
            idle_timeout: None,
            ..ServerConfig::default()
        },
        ..ServerOptions::default()
    };
    let (server, addr) = start(options).await;
    let a = TcpStream::connect(addr).await.unwrap();
    let b = TcpStream::connect(addr).await.unwrap();
    wait_open(&server, 2).await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), refused.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "refused socket is closed: {read:?}"
    );
    assert_eq!(server.totals(), (2, 1));
    drop((a, b));
    wait_open(&server, 0).await;
    let s = TcpStream::connect(addr).await.unwrap();
    let connected = Connected {
        host: s.local_addr().unwrap().into(),
        peer: s.peer_addr().unwrap().into(),
        stream: s,
        handshake: None,
        resumed: false,
    };
    let echo = echo_message(
        connected,
        Bytes::from_static(b"again"),
        ClientOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(echo, b"again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_silent_open_connection_closes_it_after_grace() {
    let (server, addr) = start(ServerOptions::default()).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"owed").await.unwrap();
    wait_open(&server, 1).await;
    // Bounded waits: a connection that never hears of the shutdown fails
    // this test instead of hanging it.
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        server.shutdown(Duration::from_millis(200)),
    )
    .await
    .expect("the shutdown never ended");
    assert_eq!(outcome, ShutdownOutcome::GraceExpired { closed: 1 });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut back))
        .await
        .expect("the connection was never closed")
        .unwrap();
    assert_eq!(back, b"owed", "flushed, then closed");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// The driver over an in-memory pipe whose buffer holds 7 bytes: every write
/// is short, every read is at most 7 bytes, for both the server and the client.
#[tokio::test]
async fn driver_echoes_exactly_through_a_seven_byte_pipe() {
    let (server_end, client_end) = tokio::io::duplex(7);
    let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let server = tokio::spawn(async move {
        let mut stream = server_end;
        let mut factory = EchoFactory::default();
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let echo = factory.build_protocol(&addr.into(), &addr.into()).unwrap();
        let mut conn = Connection::new(echo, addr, addr, WaterMarks::new(64, 0).unwrap(), now());
        let config = DriveConfig {
            read_chunk: 5,
            ..DriveConfig::default()
        };
        drive(&mut stream, &mut conn, &mut NoApp, &config, None).await;
        (conn.close_reason(), conn.protocol().received())
    });
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let connected = Connected {
        stream: client_end,
        host: addr.into(),
        peer: addr.into(),
        handshake: None,
        resumed: false,
    };
    let options = ClientOptions {
        config: ClientConfig {
            idle_timeout: Some(Duration::from_secs(5)),
            ..ClientConfig::default()
        },
        marks: WaterMarks::new(100, 0).unwrap(),
        drive: DriveConfig {
            read_chunk: 3,
            ..DriveConfig::default()
        },
    };
    let echo = echo_message(connected, Bytes::from(message.clone()), options)
        .await
        .unwrap();
    assert!(echo == message);
    let (reason, echoed) = server.await.unwrap();
    assert_eq!(reason, Some(CloseReason::Done));
    assert_eq!(echoed, message.len() as u64);
}

/// The driver skips its clock on the per-read path only for a protocol
/// that ignores the time: an idle timer still restarts on every byte.
/// Ten bytes 60 ms apart against a 100 ms idle timeout: never idle, then
/// closed 100 ms after the last one.
#[tokio::test(start_paused = true)]
async fn an_idle_timeout_counts_from_the_last_byte_not_the_first() {
    let (mut stream, mut peer) = tokio::io::duplex(64);
    let server = tokio::spawn(async move {
        let mut factory = EchoFactory::new(ServerConfig {
            idle_timeout: Some(Duration::from_millis(100)),
            ..ServerConfig::default()
        });
        let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
        let echo = factory.build_protocol(&addr.into(), &addr.into()).unwrap();
        let mut conn = Connection::new(echo, addr, addr, WaterMarks::default(), now());
        drive(
            &mut stream,
            &mut conn,
            &mut NoApp,
            &DriveConfig::default(),
            None,
        )
        .await;
        conn.close_reason()
    });
    let mut last = tokio::time::Instant::now();
    for byte in 0..10u8 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        peer.write_all(&[byte]).await.unwrap();
        let mut back = [0u8];
        peer.read_exact(&mut back)
            .await
            .unwrap_or_else(|e| panic!("byte {byte} not echoed: {e}"));
        assert_eq!(back, [byte]);
        last = tokio::time::Instant::now();
    }
    // The server's half-close (its end of file) comes when the timer fires
    // (the clock is paused: a timer that never fires fails at 5 s, not hangs).
    let ended = tokio::time::timeout(Duration::from_secs(5), peer.read(&mut [0u8; 1]))
        .await
        .expect("the idle timeout never closed the connection")
        .unwrap();
    assert_eq!(ended, 0, "nothing more to echo");
    assert_eq!(last.elapsed(), Duration::from_millis(100));
    drop(peer);
    let reason = server.await.unwrap();
    assert_eq!(
        reason,
        Some(CloseReason::Lost(echo_core::LostReason::TimedOut))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_sees_every_admission_refusal_and_loss_in_order() {
    use echo_core::ServerEvent;
    use std::sync::{Arc, Mutex};
    let options = ServerOptions {
        config: ServerConfig {
            max_connections: Some(1),
            idle_timeout: None,
            ..ServerConfig::default()
        },
        ..ServerOptions::default()
    };
    let server = EchoServer::new(options);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    assert!(server.observe(move |e| sink.lock().unwrap().push(e.clone())));
    assert!(!server.observe(|_| {}), "only the first observer is kept");
    let endpoint = "tcp:0:interface=127.0.0.1".parse().unwrap();
    let listener = AnyListener::bind(&endpoint).await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let accept = server.clone();
    tokio::spawn(async move { accept.serve(listener, TokioSpawner).await });

    let mut first = TcpStream::connect(addr).await.unwrap();
    wait_open(&server, 1).await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    assert_eq!(refused.read(&mut [0u8; 1]).await.unwrap_or(0), 0);
    first.write_all(b"abc").await.unwrap();
    first.shutdown().await.unwrap();
    let mut back = Vec::new();
    first.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"abc");
    wait_open(&server, 0).await;

    let seen = seen.lock().unwrap().clone();
    let kinds: Vec<_> = seen
        .iter()
        .map(|e| match e {
            ServerEvent::Started => "started",
            ServerEvent::ConnectionMade { open: 1, .. } => "made",
            ServerEvent::ConnectionRefused {
                open: 1, limit: 1, ..
            } => "refused",
            ServerEvent::ConnectionLost {
                received: 3,
                open: 0,
                reason,
                ..
            } if reason.is_clean() => "lost",
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["started", "made", "refused", "lost"]);
}

/// A peer that takes every byte but never lets a half-close finish and
/// never answers: what a TLS stream is when its close_notify cannot go out
/// because the peer stopped reading.
struct NoHalfClose;

impl tokio::io::AsyncRead for NoHalfClose {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl tokio::io::AsyncWrite for NoHalfClose {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Pending
    }
}

impl echo_net::Stream for NoHalfClose {}

#[tokio::test]
async fn a_half_close_that_cannot_finish_does_not_stop_the_clock() {
    // The client's input ends, so it half-closes; the shutdown never
    // completes. Its no-progress timeout must still fire.
    let addr: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let connected = Connected {
        stream: NoHalfClose,
        host: addr.into(),
        peer: addr.into(),
        handshake: None,
        resumed: false,
    };
    let options = ClientOptions {
        config: ClientConfig {
            idle_timeout: Some(Duration::from_millis(200)),
            half_close: true,
            ..ClientConfig::default()
        },
        ..ClientOptions::default()
    };
    let client = echo_core::EchoClient::streaming(options.config);
    let mut pipe = echo_net::Pipe::new(Some(&b"owed"[..]), Vec::new());
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        echo_net::run(connected, client, &mut pipe, options),
    )
    .await
    .expect("the client must not hang on its half-close");
    let error = outcome.expect_err("nothing came back");
    assert!(error.to_string().contains("timed out"), "{error}");
}

/// A listener that fails with each scripted error in turn, then hands out
/// one in-memory stream, then waits for good.
struct Scripted {
    script: std::sync::Mutex<Vec<std::io::Result<tokio::io::DuplexStream>>>,
}

impl echo_net::Listener for Scripted {
    type Stream = tokio::io::DuplexStream;

    fn accept(
        &self,
    ) -> impl Future<Output = std::io::Result<echo_net::Accepted<tokio::io::DuplexStream>>> {
        let next = {
            let mut script = self.script.lock().unwrap();
            (!script.is_empty()).then(|| script.remove(0))
        };
        async move {
            let addr: std::net::SocketAddr = "127.0.0.1:7".parse().unwrap();
            match next {
                Some(Ok(stream)) => Ok(echo_net::Accepted {
                    stream,
                    peer: addr.into(),
                    host: addr.into(),
                }),
                Some(Err(error)) => Err(error),
                None => std::future::pending().await,
            }
        }
    }
}

/// An accept that failed for one connection (aborted or reset before it
/// was taken) says nothing about the next: the server accepts again at
/// once. Any other error (out of file descriptors, say) is the listener's:
/// the server backs off (5 ms first) instead of spinning on it.
#[tokio::test(start_paused = true)]
async fn an_accept_error_of_one_connection_is_skipped_and_others_back_off() {
    use std::io::{Error, ErrorKind};
    let emfile = || Error::from_raw_os_error(24);
    for (name, error, backs_off) in [
        ("aborted", Error::from(ErrorKind::ConnectionAborted), false),
        ("reset", Error::from(ErrorKind::ConnectionReset), false),
        ("EMFILE", emfile(), true),
    ] {
        let (stream, _peer) = tokio::io::duplex(64);
        let listener = Scripted {
            script: std::sync::Mutex::new(vec![Err(error), Ok(stream)]),
        };
        let server = EchoServer::new(ServerOptions::default());
        let serving = server.clone();
        let task = tokio::spawn(async move { serving.serve(listener, TokioSpawner).await });
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(
            server.open_connections(),
            usize::from(!backs_off),
            "{name}: open after 1 ms"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(server.open_connections(), 1, "{name}: open after 11 ms");
        task.abort();
    }
}

/// What a drained connection keeps for its next echo is reported (the
/// measure the simulation's idle-memory bound reads): the whole buffer its
/// one 100-byte read needed, and never more than the kept size.
#[tokio::test]
async fn a_drained_connection_reports_the_buffer_it_kept() {
    let (stream, mut peer) = tokio::io::duplex(4096);
    let listener = Scripted {
        script: std::sync::Mutex::new(vec![Ok(stream)]),
    };
    let server = EchoServer::new(ServerOptions::default());
    let serving = server.clone();
    let task = tokio::spawn(async move { serving.serve(listener, TokioSpawner).await });
    assert_eq!(server.peak_idle_capacity(), 0, "nothing echoed yet");
    // Written before the server runs: it reads all 100 bytes at once.
    peer.write_all(&[7u8; 100]).await.unwrap();
    let mut back = [0u8; 100];
    peer.read_exact(&mut back).await.unwrap();
    drop(peer);
    wait_open(&server, 0).await;
    let kept = server.peak_idle_capacity();
    assert!(
        (100..=echo_core::KEEP_DRAINED_CAPACITY).contains(&kept),
        "kept {kept} bytes"
    );
    task.abort();
}
