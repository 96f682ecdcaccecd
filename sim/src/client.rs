//! One logical client of a TCP case: connect, echo through an application
//! side that may push back, verify, and retry after failures that faults
//! caused. Its input arrives in random pieces; its output is logged into the
//! trace and may block for a while.

use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use echo_core::{Cutoff, EchoClient, EchoError, FaultConfig};
use echo_net::{ClientError, ClientOptions, Connected, MaybeTls, Pipe, TlsClient, run};
use tokio::io::AsyncWrite;

use crate::case::{Break, ConnPlan, Stall};
use crate::io::{Held, SimStream};
use crate::tls::SERVER_NAME;
use crate::vocab::{PORT, SERVER};
use crate::world::{Attempt, World};
use crate::world::{Trace, event};

/// Collects a connection's echo and logs each write into the trace.
/// With a [`Stall`], it blocks (as a full pipe does) once that many bytes
/// were written, for that long.
struct TraceSink {
    label: String,
    bytes: Vec<u8>,
    trace: Trace,
    stall: Option<Stall>,
    /// The running stall's timer.
    blocked: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Told of every byte taken.
    held: Arc<Held>,
    /// Breaks (a closed pipe) once it took this many bytes.
    breaks_after: Option<usize>,
}

impl AsyncWrite for TraceSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut n = buf.len();
        if let Some(after) = self.breaks_after {
            if self.bytes.len() >= after {
                self.held.broke();
                event(&self.trace, format!("{} output breaks", self.label));
                return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            }
            n = n.min(after - self.bytes.len());
        }
        if let Some(stall) = self.stall {
            if self.bytes.len() >= stall.after {
                let label = self.label.clone();
                let trace = Rc::clone(&self.trace);
                let timer = self.blocked.get_or_insert_with(|| {
                    event(&trace, format!("{label} output blocks for {}ms", stall.ms));
                    Box::pin(tokio::time::sleep(Duration::from_millis(stall.ms)))
                });
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                event(&self.trace, format!("{} output unblocks", self.label));
                self.stall = stall.every.map(|every| Stall {
                    after: self.bytes.len() + every,
                    ..stall
                });
                self.blocked = None;
            } else {
                n = n.min(stall.after - self.bytes.len());
            }
        }
        self.bytes.extend_from_slice(&buf[..n]);
        self.held.delivered(n);
        event(&self.trace, format!("{} +{n}", self.label));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Streamed input: the message in random pieces of 1..=4096 bytes, ready at
/// once (like a pipe with data waiting), or with `bursts` after a pause of
/// 20-150 ms now and then (one piece in four).
struct Pieces {
    data: Bytes,
    rng: crate::io::Rng,
    bursts: bool,
    /// The pause under way.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    /// One long pause: after this many bytes, for this many milliseconds.
    hush: Option<(usize, u64)>,
    /// Reading fails once this many bytes were given.
    fails_after: Option<usize>,
    /// Bytes given so far.
    given: usize,
    /// Told of the failure.
    held: Arc<Held>,
}

impl tokio::io::AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.fails_after.is_some_and(|after| this.given >= after) {
            this.held.broke();
            return Poll::Ready(Err(std::io::Error::other("input failed")));
        }
        if let Some(pause) = this.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.pause = None;
        } else if let Some((after, ms)) = this.hush
            && this.given >= after
        {
            this.hush = None;
            let mut pause = Box::pin(tokio::time::sleep(Duration::from_millis(ms)));
            if pause.as_mut().poll(cx).is_pending() {
                this.pause = Some(pause);
                return Poll::Pending;
            }
        } else if this.bursts && !this.data.is_empty() && this.rng.upto(4) == 1 {
            let ms = 19 + this.rng.upto(131) as u64;
            let mut pause = Box::pin(tokio::time::sleep(Duration::from_millis(ms)));
            if pause.as_mut().poll(cx).is_pending() {
                this.pause = Some(pause);
                return Poll::Pending;
            }
        }
        let n = this
            .rng
            .upto(4096)
            .min(buf.remaining())
            .min(this.data.len());
        let n = match this.fails_after {
            Some(after) => n.min(after - this.given),
            None => n,
        };
        this.given += n;
        buf.put_slice(&this.data.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// One logical client: connect, echo, verify; retry after failures caused
/// by faults. Returns `Err` only for an invariant violation.
pub(crate) async fn connection(
    label: String,
    plan: ConnPlan,
    options: ClientOptions,
    (io, tls): (crate::io::IoKnobs, Option<TlsClient>),
    seed: u64,
    (faulty, one_shot, denied, misbehave): (bool, bool, bool, FaultConfig),
    world: &World,
) -> Result<(), String> {
    // A host the access list turns away makes one attempt, whatever ends it.
    // A server that cuts connections off cuts retries too: one attempt,
    // and its verdict is checked exactly.
    let cutoff = misbehave
        .cutoff
        .filter(|_| misbehave.cutoff_per_million > 0);
    // (Only shutdown cases are one-shot so far: a shutdown sends held
    // echoes at once, so the knobs' schedule bounds nothing there.)
    let shutting_down = one_shot;
    let one_shot = one_shot || denied || cutoff.is_some();
    let message = Bytes::from(plan.message.bytes());
    while !world.listening.get() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(plan.start_ms)).await;
    let mut backoff = Duration::from_millis(20);
    let mut attempt = 0u64;
    loop {
        attempt += 1;
        world.shared.stats.borrow_mut().attempts += 1;
        world.shared.event(format!("{label} attempt {attempt}"));
        let connect = tokio::time::timeout(
            Duration::from_secs(5),
            turmoil::net::TcpStream::connect((SERVER, PORT)),
        );
        let stream = match connect.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                event(
                    &world.shared.trace,
                    format!("{label} connect error {:?}", e.kind()),
                );
                if one_shot {
                    return stop(world, &label);
                }
                retry(world, &mut backoff).await;
                continue;
            }
            Err(_) => {
                world.shared.event(format!("{label} connect timed out"));
                if one_shot {
                    return stop(world, &label);
                }
                retry(world, &mut backoff).await;
                continue;
            }
        };
        let (host, peer) = match (stream.local_addr(), stream.peer_addr()) {
            (Ok(host), Ok(peer)) => (host, peer),
            _ => {
                if one_shot {
                    return stop(world, &label);
                }
                retry(world, &mut backoff).await;
                continue;
            }
        };
        let held = Arc::new(Held::default());
        let stream =
            SimStream::new(stream, io, seed.wrapping_add(attempt)).measure_held(Arc::clone(&held));
        let stream = match &tls {
            None => MaybeTls::Plain(stream),
            Some(tls) => {
                // Bounded like the connect: a partition or a crash mid-
                // handshake must end the attempt, not hang it.
                let handshake =
                    tokio::time::timeout(Duration::from_secs(5), tls.connect(SERVER_NAME, stream));
                match handshake.await {
                    Ok(Ok(stream)) => MaybeTls::Tls(Box::new(stream)),
                    failed => {
                        let why = match failed {
                            Ok(Err(e)) => echo_net::describe_tls_error(&e),
                            _ => "timed out".to_owned(),
                        };
                        world
                            .shared
                            .event(format!("{label} handshake failed: {why}"));
                        world.shared.stats.borrow_mut().handshakes_cut += 1;
                        if !faulty && !one_shot {
                            return Err(format!(
                                "{label}: TLS handshake failed without any fault: {why}"
                            ));
                        }
                        if one_shot {
                            return stop(world, &label);
                        }
                        retry(world, &mut backoff).await;
                        continue;
                    }
                }
            }
        };
        let connected = Connected {
            stream,
            host: host.into(),
            peer: peer.into(),
            handshake: None,
            resumed: false,
        };
        let (client, input) = if plan.streaming {
            let input = Pieces {
                data: message.clone(),
                rng: crate::io::Rng::new(seed ^ attempt),
                bursts: plan.bursts,
                pause: None,
                hush: plan.hush_ms.map(|ms| (message.len() / 2, ms)),
                fails_after: match plan.breaks {
                    Some(Break::Input(after)) => Some(after),
                    _ => None,
                },
                given: 0,
                held: Arc::clone(&held),
            };
            (EchoClient::streaming(options.config), Some(input))
        } else {
            (EchoClient::message(message.clone(), options.config), None)
        };
        let sink = TraceSink {
            label: label.clone(),
            bytes: Vec::new(),
            trace: Rc::clone(&world.shared.trace),
            stall: plan.stall,
            blocked: None,
            held: Arc::clone(&held),
            breaks_after: match plan.breaks {
                Some(Break::Output(after)) => Some(after),
                _ => None,
            },
        };
        let mut pipe = Pipe::new(input, sink);
        let began = tokio::time::Instant::now();
        let echo = run(connected, client, &mut pipe, options);
        let result = match plan.give_up_ms.filter(|_| attempt == 1) {
            Some(ms) => tokio::time::timeout(Duration::from_millis(ms), echo)
                .await
                .ok(),
            None => Some(echo.await),
        };
        let took = began.elapsed();
        world.shared.hit(crate::coverage::verdict(result.as_ref()));
        let got = pipe.into_output().bytes;
        // The client's memory bound: it reads only while fewer than
        // `max_undelivered` verified bytes wait for the application, so it
        // holds at most that less one, plus one read, plus the one event
        // its output is still writing. (Over TLS the socket's bytes are
        // records, not echo.)
        if tls.is_none() {
            let (allowed, read) = (options.config.max_undelivered, options.drive.read_chunk);
            let bound = allowed - 1 + 2 * read;
            if held.peak() > bound {
                return Err(format!(
                    "{label}: held {} echoed bytes its application had not taken, above \
                     max_undelivered {allowed} - 1 + two reads of {read}",
                    held.peak()
                ));
            }
            if held.peak() >= allowed {
                world.shared.stats.borrow_mut().held_full += 1;
            }
        }
        // Safety: what came back is always a prefix of what was sent.
        if !message.starts_with(&got) {
            return Err(format!(
                "{label}: received {} bytes that are not a prefix of what was sent",
                got.len()
            ));
        }
        world.attempts.borrow_mut().push(Attempt {
            label: format!("{label} attempt {attempt}"),
            local: host,
            len: message.len(),
            received: got.len(),
            done: matches!(result, Some(Ok(_))),
        });
        if matches!(result, Some(Ok(_)))
            && !shutting_down
            && let Some(why) = too_fast(&misbehave, message.len(), took)
        {
            return Err(format!("{label}: {why}"));
        }
        if let Some(broken) = plan.breaks {
            return broke(world, &label, broken, &held, &result, got.len());
        }
        if let Some(cutoff) = cutoff {
            let share = misbehave.cutoff_per_million;
            return cut_verdict(
                world,
                &label,
                (cutoff, share),
                message.len(),
                got.len(),
                &result,
            );
        }
        if denied {
            // Closed at once, before any echo: nothing comes back, and only
            // an empty echo (which cannot tell) may end as done.
            if !got.is_empty() || (matches!(result, Some(Ok(_))) && !message.is_empty()) {
                return Err(format!(
                    "{label}: its host is denied, yet {} of {} bytes came back (done: {})",
                    got.len(),
                    message.len(),
                    matches!(result, Some(Ok(_)))
                ));
            }
            world.shared.event(format!("{label} turned away"));
            return stop(world, &label);
        }
        match result {
            Some(Ok(summary)) => {
                let len = message.len() as u64;
                if got.len() != message.len() || summary.sent != len || summary.received != len {
                    return Err(format!(
                        "{label}: reported done with {summary:?} but {} of {len} bytes came back",
                        got.len()
                    ));
                }
                world.shared.event(format!("{label} done {len}"));
                world.shared.stats.borrow_mut().done += 1;
                *world.running.borrow_mut() -= 1;
                return Ok(());
            }
            Some(Err(ClientError::Echo(
                e @ (EchoError::Mismatch { .. } | EchoError::Unexpected { .. }),
            ))) => {
                return Err(format!("{label}: corrupted echo: {e}"));
            }
            Some(Err(e)) if !faulty && !one_shot => {
                return Err(format!("{label}: failed without any fault: {e}"));
            }
            Some(Err(e)) => world.shared.event(format!("{label} failed: {e}")),
            None => world.shared.event(format!("{label} gave up")),
        }
        if one_shot {
            return stop(world, &label);
        }
        retry(world, &mut backoff).await;
    }
}

/// The verdict on a client whose application side failed before the echo
/// could end (cases without faults, so nothing else ends it first): its
/// local error, nothing read from the socket after the failure, exactly
/// the output's share written to it. It makes no further attempt.
fn broke(
    world: &World,
    label: &str,
    broken: Break,
    held: &Held,
    result: &Option<Result<echo_net::Summary, ClientError>>,
    written: usize,
) -> Result<(), String> {
    let Some((at, since)) = held.read_since_break() else {
        return Err(format!(
            "{label}: its application was to fail ({broken:?}) but was never asked to; \
             the echo ended with {result:?}"
        ));
    };
    if !matches!(result, Some(Err(ClientError::Local(_)))) {
        return Err(format!(
            "{label}: its application failed ({broken:?}), yet the echo ended with {result:?}"
        ));
    }
    if since > 0 {
        return Err(format!(
            "{label}: read {since} more bytes from the server after its application \
             failed ({broken:?}, {at} read before)"
        ));
    }
    if let Break::Output(after) = broken
        && written != after
    {
        return Err(format!(
            "{label}: its output broke after {after} bytes, yet took {written}"
        ));
    }
    world.shared.stats.borrow_mut().broken += 1;
    world.shared.event(format!("{label} application failed"));
    stop(world, label)
}

/// Whether an echo of `len` bytes that ended after `took` came back
/// sooner than the server's delay and throttle allow (`Some(why)`).
fn too_fast(knobs: &FaultConfig, len: usize, took: Duration) -> Option<String> {
    let earliest = crate::knobs::earliest_done(knobs, len as u64, Duration::ZERO);
    (took < earliest).then(|| {
        format!(
            "done {len} bytes in {took:?}, sooner than the server's delay {:?} and \
             throttle {:?} B/s allow ({earliest:?})",
            knobs.delay, knobs.throttle
        )
    })
}

/// The verdict on a client of a server that cuts connections off (a
/// `share` of them, in millionths): done with every byte where the cut-off
/// cannot apply (a message shorter than it lets through, a share of none)
/// and may not have (a share of some); otherwise ended as the cut-off says
/// ([`crate::knobs::cut_off_as_told`]), with what came back all verified.
/// A message exactly as long as the cut-off lets through may end either
/// way: the server cuts once it has echoed that much (an empty one at
/// once), which can come before the client learns that its input ended.
fn cut_verdict(
    world: &World,
    label: &str,
    (cutoff, share): (Cutoff, u32),
    len: usize,
    got: usize,
    result: &Option<Result<echo_net::Summary, ClientError>>,
) -> Result<(), String> {
    let cut = crate::knobs::cut_bytes(cutoff);
    let applies = len as u64 > cut;
    let may_apply = len as u64 >= cut;
    let every = share == FaultConfig::EVERY_CONNECTION;
    match result {
        Some(Ok(_)) if applies && every => Err(format!(
            "{label}: every connection is cut off ({cutoff}), yet all {len} bytes came back"
        )),
        Some(Ok(_)) => {
            if applies {
                world.shared.stats.borrow_mut().spared += 1;
            }
            world.shared.event(format!("{label} done {len}"));
            world.shared.stats.borrow_mut().done += 1;
            stop(world, label)
        }
        Some(Err(ClientError::Echo(error)))
            if may_apply && crate::knobs::cut_off_as_told(cutoff, error) =>
        {
            world.shared.stats.borrow_mut().cut += 1;
            world.shared.event(format!("{label} cut off after {got}"));
            stop(world, label)
        }
        other => Err(format!(
            "{label}: sent {len} to a server that cuts off ({cutoff}, {share} per million), \
             got {got} back and {other:?}"
        )),
    }
}

/// Ends a one-shot client (the server is shutting down) without an echo.
fn stop(world: &World, label: &str) -> Result<(), String> {
    world.shared.event(format!("{label} stops"));
    *world.running.borrow_mut() -= 1;
    Ok(())
}

async fn retry(world: &World, backoff: &mut Duration) {
    world.shared.stats.borrow_mut().retries += 1;
    tokio::time::sleep(*backoff).await;
    *backoff = (*backoff * 2).min(Duration::from_secs(1));
}
