//! Peers in front of our server: a proxy that re-chunks and delays both
//! ways, and a balancer that speaks the PROXY protocol first (HAProxy's
//! `send-proxy`). Our server behind them, how they relay, the verdict the
//! client earns, and what the server must have reported of the client.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use echo_core::{Address, EchoError, ProxyHeader, ServerConfig, ServerEvent};
use echo_net::{AccessList, ClientError, EchoServer, IpNet, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Denied, Judging, PEER, PORT, Peer, Reported, ZooCase, banner_text};
use crate::io::{IoKnobs, LocalSpawner, SimListener};
use crate::world::Shared;

/// The host our server runs on, behind the relay.
pub(super) const ECHO: &str = "echo";

/// Our server on [`ECHO`], with the case's access list and banner,
/// reporting each connection it admits into `made`.
pub(super) fn host_server(
    sim: &mut turmoil::Sim<'_>,
    case: &ZooCase,
    shared: &Shared,
    made: &Arc<Mutex<Vec<Reported>>>,
) {
    let panics = std::rc::Rc::clone(&shared.panics);
    let proxied = matches!(case.peer, Peer::ProxyRelay { .. });
    let made = Arc::clone(made);
    let deny = case.deny;
    let banner = case.banner.map(banner_text);
    sim.host(ECHO, move || {
        let (panics, made) = (std::rc::Rc::clone(&panics), Arc::clone(&made));
        async move {
            let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
            let server = EchoServer::new(ServerOptions {
                config: ServerConfig {
                    idle_timeout: Some(Duration::from_secs(5)),
                    banner,
                    ..ServerConfig::default()
                },
                ..ServerOptions::default()
            });
            if let Some(deny) = deny {
                let host = match deny {
                    Denied::Relay => PEER,
                    Denied::Client => "client",
                };
                server.restrict(AccessList {
                    allow: Vec::new(),
                    deny: vec![IpNet::from(turmoil::lookup(host))],
                });
            }
            server.observe(move |event| {
                if let ServerEvent::ConnectionMade {
                    peer,
                    via,
                    health_check,
                    ..
                } = event
                {
                    let mut made = made.lock().unwrap_or_else(PoisonError::into_inner);
                    made.push((peer.clone(), via.clone(), *health_check));
                }
            });
            let listener = SimListener::new(listener, IoKnobs::PLAIN, 1);
            let spawner = LocalSpawner {
                panics,
                quantum: None,
            };
            if proxied {
                server.serve_proxied(listener, spawner).await;
            } else {
                server.serve(listener, spawner).await;
            }
            Ok(())
        }
    });
}

/// Relays one client connection to our server, as `peer` does.
pub(super) async fn serve(peer: Peer, mut stream: turmoil::net::TcpStream) {
    match peer {
        Peer::Relay { chunk, delay_ms } => {
            if let Ok(upstream) = turmoil::net::TcpStream::connect((ECHO, PORT)).await {
                relay(stream, upstream, chunk, delay_ms).await;
            }
        }
        Peer::ProxyRelay {
            version,
            chunk,
            delay_ms,
        } => {
            let Ok(mut upstream) = turmoil::net::TcpStream::connect((ECHO, PORT)).await else {
                return;
            };
            let (Ok(client), Ok(me)) = (stream.peer_addr(), stream.local_addr()) else {
                return;
            };
            let header = ProxyHeader::Proxied {
                version,
                source: client,
                destination: me,
                tlvs: echo_core::Tlvs::default(),
            };
            // Sent in pieces too: the server must take a header split
            // anywhere. The last piece goes out with the client's first
            // bytes, in one write, as a balancer may coalesce them: the
            // server must keep what follows the header in the same read.
            // It waits for those bytes a moment only: a server that speaks
            // first (a banner) must hear the whole header before the client
            // has anything to say.
            let encoded = header.encode(version);
            let pieces: Vec<&[u8]> = encoded.chunks(chunk.clamp(1, 7)).collect();
            let Some((last, head)) = pieces.split_last() else {
                return;
            };
            for piece in head {
                if upstream.write_all(piece).await.is_err() {
                    return;
                }
            }
            let mut first = last.to_vec();
            let mut buf = vec![0u8; chunk.max(1)];
            let early = tokio::time::timeout(Duration::from_millis(20), stream.read(&mut buf));
            if let Ok(Ok(n)) = early.await {
                first.extend_from_slice(&buf[..n]);
            }
            if upstream.write_all(&first).await.is_err() {
                return;
            }
            relay(stream, upstream, chunk, delay_ms).await;
        }
        _ => {}
    }
}

/// The verdict the client earns through a relay.
pub(super) fn earned(j: &Judging<'_>) -> bool {
    let case = j.case;
    if case.turned_away() {
        // Denied before any echo: nothing comes back (an empty echo cannot
        // tell, and is done).
        return j.cut_at(0) || (j.len() == 0 && j.done());
    }
    if case.banner.is_some_and(|n| n > echo_core::MAX_BANNER) {
        return matches!(j.verdict, Err(ClientError::Echo(EchoError::NoBanner)));
    }
    j.done()
}

/// What our server must have reported behind the relay: the client only
/// when the relay declared it in a PROXY header (a plain relay is the peer
/// itself), never a health check; nothing when it turned the echo away.
pub(super) fn reported_right(
    case: &ZooCase,
    made: &[Reported],
    client: Option<&Address>,
) -> Result<(), String> {
    let declared = matches!(case.peer, Peer::ProxyRelay { .. });
    let right = match made {
        // Turned away by the access list: never admitted.
        [] => case.turned_away(),
        // A header declaring someone else than the balancer is a
        // client's connection, never a health check (HAProxy's v1
        // check declares the balancer's own address).
        [(peer, via, health_check)] => {
            !case.turned_away()
                && (Some(peer) == client) == declared
                && via.is_some() == declared
                && !health_check
        }
        _ => false,
    };
    if right {
        Ok(())
    } else {
        Err(format!(
            "behind {:?} the server reported {made:?}; the client was {client:?}",
            case.peer
        ))
    }
}

/// Forwards both ways, re-chunked and delayed, until both sides close.
async fn relay(
    client: turmoil::net::TcpStream,
    server: turmoil::net::TcpStream,
    chunk: usize,
    delay_ms: u64,
) {
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(
        pump(client_read, server_write, chunk, delay_ms),
        pump(server_read, client_write, chunk, delay_ms)
    );
}

async fn pump(
    mut from: turmoil::net::tcp::OwnedReadHalf,
    mut to: turmoil::net::tcp::OwnedWriteHalf,
    chunk: usize,
    delay_ms: u64,
) {
    let mut buf = vec![0u8; chunk.max(1)];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
