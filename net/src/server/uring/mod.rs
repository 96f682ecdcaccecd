//! The echo server on io_uring: a completion-driven loop, one thread, one
//! ring, the same `echo-core` state machines and the same server (factory,
//! access list, limits, counters, warnings, graceful shutdown) as the tokio
//! path. The kernel accepts (multishot), receives into buffers the loop
//! lends it (one pool per loop: an idle connection holds no buffer) and sends from a buffer each connection owns while the send is
//! in flight (`Connection::poll_transmit`).
//!
//! Serves `tcp:`, `ssl:` and their `haproxy:` forms (rustls run over the
//! completions, `tls.rs`); Unix sockets stay on the tokio path. Every
//! `unsafe` block of the crate is in this module: each hands the kernel
//! memory that must stay put until its completion, and says why it does.

#![allow(unsafe_code)]

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use echo_core::{Address, Arrival, Factory, ProxyDecoder, ProxyError};
use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::handshake::handshake_failed;
use super::proxy::{Refusal, declared, refuse};
use super::served::{admit, book_end};
use super::{EchoServer, Inner, Nudge, PROXY_HEADER_TIMEOUT};
use crate::tls::TlsServer;
use crate::traffic::Metered;
use crate::warnings::Warning;

mod batch;
mod conn;
mod pool;
mod tls;
mod token;

use batch::Batch;
use conn::{Conn, End, Recv, Todo};
use pool::{GROUP, Pool};
use tls::{Handshake, Outcome};
use token::{Kind, Token};

/// Submission queue entries per ring (the completion queue is twice that,
/// and the kernel keeps completions that overflow it).
const RING_ENTRIES: u32 = 4096;
/// The oldest kernel with everything the loop posts (multishot accept
/// is 5.19; 6.0 is the line the probe draws).
const MIN_KERNEL: (u32, u32) = (6, 0);

/// Why the io_uring path cannot run here.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    /// The kernel is older than 6.0.
    #[error("the kernel is {found}; the io_uring path needs 6.0 or later")]
    KernelTooOld {
        /// The kernel's release.
        found: String,
    },
    /// `io_uring_setup` failed: a seccomp profile (Docker's default, most
    /// container runtimes') or `kernel.io_uring_disabled` forbid it.
    #[error("io_uring_setup failed: {error}{hint}")]
    Setup {
        /// What the system call said.
        error: io::Error,
        /// Where that usually comes from.
        hint: &'static str,
    },
    /// The ring failed while serving (not at its setup).
    #[error("the io_uring loop failed: {0}")]
    Failed(io::Error),
}

/// Whether this process may use io_uring as the server does: the kernel
/// is new enough and a ring can be set up (no seccomp filter or sysctl
/// forbids it). `--io auto` asks this and falls back to epoll if not.
///
/// # Errors
/// Why not, in words a user can act on.
pub fn probe() -> Result<(), UringError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let release = release.trim();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    if let (Some(major), Some(minor)) = (numbers.next(), numbers.next())
        && (major, minor) < MIN_KERNEL
    {
        return Err(UringError::KernelTooOld {
            found: release.to_owned(),
        });
    }
    match IoUring::new(8) {
        Ok(_) => Ok(()),
        Err(error) => Err(setup_error(error)),
    }
}

fn setup_error(error: io::Error) -> UringError {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .is_ok_and(|v| v.trim() != "0");
    let hint = match error.raw_os_error() {
        Some(libc::EPERM) if disabled => " (kernel.io_uring_disabled forbids it for this process)",
        Some(libc::EPERM) => {
            " (a seccomp filter forbids it: Docker's and most container runtimes' default profiles do)"
        }
        Some(libc::ENOSYS) => " (the kernel was built without io_uring)",
        _ => "",
    };
    UringError::Setup { error, hint }
}

impl EchoServer {
    /// Serves `listener` on io_uring on this thread until the server stops
    /// accepting and every connection this loop accepted has ended: as
    /// [`serve`](Self::serve) does, or, with `proxied`, as
    /// [`serve_proxied`](Self::serve_proxied), or, with `tls`, as
    /// [`serve_tls`](Self::serve_tls) does. Call [`probe`] first for a
    /// clear reason when io_uring is not available.
    ///
    /// # Errors
    /// The ring cannot be set up or fails: the listener is closed, and its
    /// connections with it.
    pub fn serve_uring(
        &self,
        listener: TcpListener,
        proxied: bool,
        tls: Option<&TlsServer>,
    ) -> Result<(), UringError> {
        let (mut ring, deferred) = build_ring().map_err(setup_error)?;
        let chunk = self.inner.options.drive.read_chunk.clamp(512, 64 * 1024);
        let mut window = self.inner.options.drive.batch_wait;
        let can_wait = deferred && ring.params().is_feature_min_timeout();
        if !window.is_zero() && !can_wait {
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| {
                tracing::warn!(
                    "--batch-wait has no effect here: it needs Linux 6.12 (io_uring's min_wait and deferred completions)"
                );
            });
            window = Duration::ZERO;
        }
        let wake = Arc::new(EventFd::new().map_err(setup_error)?);
        let nudge: Arc<dyn Nudge> = wake.clone();
        self.inner.wake_on_change(Arc::downgrade(&nudge));
        let mut event_loop = Loop {
            wake,
            // Leaked on purpose: its read may still be in the kernel when
            // the loop ends (8 bytes per loop, once).
            wake_buf: Box::leak(Box::new([0; 8])),
            wake_armed: false,
            inner: Arc::clone(&self.inner),
            pool: Pool::new(&mut ring, chunk).map_err(setup_error)?,
            ring,
            listener: Some(listener),
            proxied,
            tls: tls.map(TlsServer::config),
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            timers: BinaryHeap::new(),
            accept: Recv::Idle,
            closed_all: false,
            backoff_until: None,
            live: 0,
            chunk: u32::try_from(chunk).unwrap_or(u32::MAX),
            short_of_buffers: 0,
            batch: Batch::new(window),
            batched: false,
        };
        self.inner.with_factory(Factory::do_start);
        let result = event_loop.run();
        self.inner.with_factory(Factory::do_stop);
        if result.is_err() {
            // Operations may still be posted: the kernel may write into
            // the pool until the ring is gone, so the pool is never freed.
            std::mem::forget(event_loop.pool);
            drop(event_loop.ring);
        }
        result.map_err(UringError::Failed)
    }
}

/// A ring whose completions' work waits for the loop to ask
/// (`DEFER_TASKRUN`, 6.1: no wake-up per completion, so a turn can wait for
/// several; see [`batch`]), and whether it got one; before 6.1, one that
/// runs that work when the loop next enters the kernel (`COOP_TASKRUN`,
/// 5.19) instead of interrupting it, which without either the kernel did
/// through the thread's signal path for each completion (0.3-0.5 us per
/// echo at 64 B, BENCHMARKS.md's profile by category).
fn build_ring() -> io::Result<(IoUring, bool)> {
    let deferred = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(RING_ENTRIES);
    match deferred {
        Ok(ring) => Ok((ring, true)),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
            let ring = IoUring::builder()
                .setup_coop_taskrun()
                .build(RING_ENTRIES)?;
            Ok((ring, false))
        }
        Err(error) => Err(error),
    }
}

/// Pushes `entry` on the submission queue, submitting first if it is full.
///
/// # Safety
/// Whatever memory `entry` points at must stay valid and unmoved until the
/// operation completes.
unsafe fn push(ring: &mut IoUring, entry: &squeue::Entry) -> io::Result<()> {
    loop {
        // SAFETY: the caller's promise.
        if unsafe { ring.submission().push(entry) }.is_ok() {
            return Ok(());
        }
        ring.submit()?;
    }
}

/// A connection's slot: its socket and where it is in its life.
struct Slot {
    socket: TcpStream,
    generation: u32,
    stage: Stage,
    span: tracing::Span,
    /// The deadline its timer entry is queued for: a new one is queued
    /// only when the deadline moves earlier or this one fired, so the
    /// queue holds a few entries per connection, not one per completion.
    armed: Option<Instant>,
}

enum Stage {
    /// A `haproxy:` connection before its header is complete.
    Header(Header),
    /// An `ssl:` connection before its handshake finished.
    Handshake(Box<Handshake>),
    /// Admitted: the echo.
    Echo(Box<Conn>),
}

/// A PROXY header on its way.
struct Header {
    decoder: ProxyDecoder,
    /// A byte came (a peer that closes before any is a TCP health check).
    any: bool,
    deadline: Instant,
    peer: Address,
    host: Address,
    recv: Recv,
    /// The header was judged: the socket closes once the receive ended.
    done: bool,
}

struct Loop {
    inner: Arc<Inner>,
    /// Written by [`EchoServer::stop_accepting`] and
    /// [`EchoServer::close_all`]; a read on it is always posted, so the
    /// loop sleeps until something happens, with no timer.
    wake: Arc<EventFd>,
    wake_buf: &'static mut [u8; 8],
    wake_armed: bool,
    ring: IoUring,
    /// Declared after the ring, so dropped after it (fields drop in
    /// order): the kernel knows the pool's buffer ring until the ring
    /// closes.
    pool: Pool,
    listener: Option<TcpListener>,
    proxied: bool,
    /// `ssl:`: the handshake before admission.
    tls: Option<Arc<rustls::ServerConfig>>,
    slots: Vec<Option<Slot>>,
    /// Each slot's generation: bumped when it is freed, so a late
    /// completion for its last connection is not taken for the next one.
    generations: Vec<u32>,
    free: Vec<u32>,
    /// Deadlines (lazily invalidated: checked against the slot's own).
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// The multishot accept.
    accept: Recv,
    closed_all: bool,
    /// After an accept error that is not about one connection (out of
    /// descriptors), when to accept again.
    backoff_until: Option<(Instant, Duration)>,
    /// Slots in use.
    live: usize,
    /// The receive buffers' size.
    chunk: u32,
    /// Receives that found no buffer free in this turn.
    short_of_buffers: usize,
    /// How many completions a turn waits for.
    batch: Batch,
    /// A turn waited for several once.
    batched: bool,
}

impl Loop {
    fn run(&mut self) -> io::Result<()> {
        let mut completions: Vec<(u64, i32, u32)> = Vec::with_capacity(256);
        loop {
            let now = Instant::now();
            let accepting = *self.inner.accepting.borrow();
            self.control(accepting, now)?;
            if !accepting && self.accept == Recv::Idle && self.live == 0 {
                self.listener = None;
                return Ok(());
            }
            if !self.wake_armed {
                let entry = opcode::Read::new(
                    types::Fd(self.wake.as_raw_fd()),
                    self.wake_buf.as_mut_ptr(),
                    8,
                )
                .build()
                .user_data(Token::new(Kind::Wake, 0, 0).into());
                // SAFETY: the buffer is leaked: it outlives any read.
                unsafe { push(&mut self.ring, &entry)? };
                self.wake_armed = true;
            }
            let wait = self.batch.poll_wait();
            if wait.want > 1 && !self.batched {
                // Once per loop: the rate can cross the line every period.
                self.batched = true;
                tracing::debug!(
                    want = wait.want,
                    min_wait_us = wait.min_wait_us,
                    "completions come fast: turns now wait for several while they do (--batch-wait)"
                );
            }
            let args = types::SubmitArgs::new().min_wait_usec(wait.min_wait_us);
            let submitted = match self.next_deadline(now) {
                Some(at) => {
                    let ts = types::Timespec::from(at.saturating_duration_since(now));
                    self.ring
                        .submitter()
                        .submit_with_args(wait.want, &args.timespec(&ts))
                }
                None if wait.min_wait_us > 0 => {
                    self.ring.submitter().submit_with_args(wait.want, &args)
                }
                None => self.ring.submitter().submit_and_wait(1),
            };
            match submitted {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                // The completion queue is full: drain it first.
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
            completions.clear();
            completions.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            let now = Instant::now();
            self.batch.handle_turn(completions.len(), now);
            self.short_of_buffers = 0;
            for &(user_data, result, flags) in &completions {
                self.complete(user_data, result, flags, now)?;
            }
            if self.short_of_buffers > 0 {
                // As many as were missing, at once: growing a block per
                // turn left a thousand connections starving for dozens of
                // turns.
                let wanted = self.pool.len() + self.short_of_buffers;
                while self.pool.len() < wanted && self.pool.grow() {}
                tracing::debug!(buffers = self.pool.len(), "receive buffers added");
            }
            self.expire(now)?;
            // Buffers given back in this turn, before the next receives.
            self.pool.publish();
        }
    }

    /// Starts or stops accepting, and closes every connection once told to.
    fn control(&mut self, accepting: bool, now: Instant) -> io::Result<()> {
        match (accepting, self.accept) {
            (true, Recv::Idle) => {
                let backing_off = self.backoff_until.is_some_and(|(until, _)| now < until);
                if let Some(listener) = self.listener.as_ref().filter(|_| !backing_off) {
                    let entry = opcode::AcceptMulti::new(types::Fd(listener.as_raw_fd()))
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                        .user_data(Token::new(Kind::Accept, 0, 0).into());
                    // SAFETY: an accept points at no memory of ours.
                    unsafe { push(&mut self.ring, &entry)? };
                    self.accept = Recv::Armed;
                }
            }
            (false, Recv::Armed) => {
                self.cancel(Token::new(Kind::Accept, 0, 0))?;
                self.accept = Recv::Cancelling;
            }
            // The accept is over: close the listener at once, as the tokio
            // path does, so that new connections are refused, not queued.
            (false, Recv::Idle) if self.listener.is_some() => {
                self.listener = None;
                // Connections still sending their PROXY header are not
                // admitted any more (as on the tokio path): closed now,
                // not at their header's deadline.
                for index in 0..self.slots.len() {
                    match self.slots[index].as_mut().map(|slot| &mut slot.stage) {
                        Some(Stage::Header(header)) if !header.done => header.done = true,
                        // Nor connections mid-handshake (the tokio path drops
                        // them once their handshake ends).
                        Some(Stage::Handshake(handshake)) if !handshake.over => {
                            handshake.over = true;
                        }
                        _ => continue,
                    }
                    self.settle(index as u32, now)?;
                }
            }
            _ => {}
        }
        if !self.closed_all && self.inner.close.is_triggered() {
            self.closed_all = true;
            let flush_timeout = self.inner.options.drive.flush_timeout;
            for index in 0..self.slots.len() {
                let Some(slot) = self.slots[index].as_mut() else {
                    continue;
                };
                if let Stage::Echo(conn) = &mut slot.stage {
                    let _entered = slot.span.clone().entered();
                    conn.on_close_all(now, flush_timeout);
                }
                self.settle(index as u32, now)?;
            }
        }
        Ok(())
    }

    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        // A back-off that has passed is no deadline: its accept is posted
        // again, and the loop must not spin on it until a connection comes.
        let backoff = self.backoff_until.map(|(at, _)| at).filter(|at| *at > now);
        match (timer, backoff) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn cancel(&mut self, target: Token) -> io::Result<()> {
        let entry = opcode::AsyncCancel::new(target.into())
            .build()
            .user_data(Token::new(Kind::Cancel, target.generation, target.slot).into());
        // SAFETY: a cancellation points at no memory.
        unsafe { push(&mut self.ring, &entry) }
    }

    fn complete(
        &mut self,
        user_data: u64,
        result: i32,
        flags: u32,
        now: Instant,
    ) -> io::Result<()> {
        let Some(token) = Token::parse(user_data) else {
            return Ok(());
        };
        tracing::trace!(?token, result, flags, "completion");
        match token.kind {
            Kind::Accept => self.accepted(result, flags, now),
            Kind::Recv => self.received(token, result, flags, now),
            Kind::Send => self.sent(token, result, now),
            Kind::Cancel => Ok(()),
            // Posted again before the next wait; `control` looks first.
            Kind::Wake => {
                self.wake_armed = false;
                Ok(())
            }
        }
    }

    fn accepted(&mut self, result: i32, flags: u32, now: Instant) -> io::Result<()> {
        if !cqueue::more(flags) {
            self.accept = Recv::Idle;
        }
        if result < 0 {
            let error = io::Error::from_raw_os_error(-result);
            if matches!(
                error.kind(),
                io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
            ) || result == -libc::ECANCELED
            {
                tracing::debug!(%error, "accept failed for one connection");
                return Ok(());
            }
            let backoff = self
                .backoff_until
                .map_or(Duration::from_millis(5), |(_, b)| {
                    (b * 2).min(Duration::from_secs(1))
                });
            if self
                .inner
                .warnings
                .allow(Warning::AcceptFailed, &"-", &error.to_string())
            {
                tracing::warn!(%error, retry_in = ?backoff, "accept failed; backing off");
            }
            self.backoff_until = Some((now + backoff, backoff));
            if self.accept == Recv::Armed {
                self.cancel(Token::new(Kind::Accept, 0, 0))?;
                self.accept = Recv::Cancelling;
            }
            return Ok(());
        }
        self.backoff_until = None;
        // SAFETY: the kernel made this descriptor for us, and nothing else
        // owns it.
        let socket = unsafe { TcpStream::from_raw_fd(result) };
        let (Ok(peer), Ok(host)) = (socket.peer_addr(), socket.local_addr()) else {
            return Ok(()); // gone already: closed here
        };
        let _ = socket.set_nodelay(true);
        let (peer, host) = (Address::from(peer), Address::from(host));
        let stage = if self.proxied {
            Stage::Header(Header {
                decoder: ProxyDecoder::new(),
                any: false,
                deadline: now + PROXY_HEADER_TIMEOUT,
                peer,
                host,
                recv: Recv::Idle,
                done: false,
            })
        } else if let Some(config) = &self.tls {
            Stage::Handshake(Box::new(Handshake::new(
                Arc::clone(config),
                (peer, host, Arrival::default()),
                Recv::Idle,
                now,
                self.inner.options.drive.handshake_timeout,
            )))
        } else {
            let Some((echo, span)) = admit(&self.inner, peer, host, Arrival::default(), &[], now)
            else {
                return Ok(()); // refused: closed at once
            };
            let slot = self.insert(
                socket,
                Stage::Echo(Box::new(Conn::new(echo, Recv::Idle))),
                span,
            );
            return self.settle(slot, now);
        };
        let slot = self.insert(socket, stage, tracing::Span::none());
        self.settle(slot, now)
    }

    fn insert(&mut self, socket: TcpStream, stage: Stage, span: tracing::Span) -> u32 {
        self.live += 1;
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 connections")
            }
        };
        self.slots[index as usize] = Some(Slot {
            socket,
            generation: self.generations[index as usize],
            stage,
            span,
            armed: None,
        });
        index
    }

    /// The slot a completion or a timer is about, if it is still the same
    /// connection.
    fn slot(&mut self, index: u32, generation: u32) -> Option<&mut Slot> {
        self.slots
            .get_mut(index as usize)?
            .as_mut()
            .filter(|s| s.generation == generation)
    }

    fn received(&mut self, token: Token, result: i32, flags: u32, now: Instant) -> io::Result<()> {
        let buffer = cqueue::buffer_select(flags).filter(|id| self.pool.holds(*id));
        let more = cqueue::more(flags);
        let count = self.inner.options.count_traffic;
        if result == -libc::ENOBUFS {
            self.short_of_buffers += 1;
        }
        let inner = &self.inner;
        let tls = self.tls.as_ref();
        let Some(slot) = self
            .slots
            .get_mut(token.slot as usize)
            .and_then(Option::as_mut)
            .filter(|s| s.generation == token.generation)
        else {
            if let Some(id) = buffer {
                self.pool.give_back(id);
            }
            return Ok(());
        };
        let _entered = slot.span.clone().entered();
        let got = match (result, buffer) {
            (n, Some(id)) if n > 0 => Got::Data(self.pool.filled(id, n as usize)),
            (0, _) => Got::End,
            // Out of buffers or cancelled: nothing came, the receive ended.
            (n, _) if n == -libc::ENOBUFS || n == -libc::ECANCELED => Got::Nothing,
            (n, _) if n < 0 => Got::Failed(io::Error::from_raw_os_error(-n)),
            _ => Got::Nothing,
        };
        match &mut slot.stage {
            Stage::Echo(conn) => {
                match got {
                    Got::Data(bytes) => conn.on_data(bytes, now),
                    Got::End => conn.on_eof(now),
                    Got::Failed(error) => conn.on_recv_error(&error, now),
                    Got::Nothing => {}
                }
                if !more {
                    conn.on_recv_ended();
                }
                if count {
                    Metered::count(&inner.counters, &mut conn.seen, &conn.echo);
                }
            }
            Stage::Handshake(handshake) => {
                let outcome = match got {
                    Got::Data(bytes) => handshake.on_data(bytes),
                    Got::End => handshake.on_end(None),
                    Got::Failed(error) => handshake.on_end(Some(error)),
                    Got::Nothing => Outcome::Going,
                };
                if !more {
                    handshake.recv = Recv::Idle;
                }
                handshake_outcome(inner, slot, outcome, now);
            }
            Stage::Header(header) => {
                if !more {
                    header.recv = Recv::Idle;
                }
                if !header.done {
                    match got {
                        Got::Data(bytes) => {
                            header.any = true;
                            match header.decoder.feed(bytes) {
                                Ok(None) => {}
                                Ok(Some((parsed, used))) => {
                                    let first = bytes[used..].to_vec();
                                    let (peer, host, arrival) =
                                        declared(parsed, header.peer.clone(), header.host.clone());
                                    let recv = header.recv;
                                    if !*inner.accepting.borrow() {
                                        header.done = true; // shut down meanwhile
                                    } else if let Some(config) = tls {
                                        // The handshake's time starts after the header.
                                        let mut handshake = Box::new(Handshake::new(
                                            Arc::clone(config),
                                            (peer, host, arrival),
                                            recv,
                                            now,
                                            inner.options.drive.handshake_timeout,
                                        ));
                                        let outcome = if first.is_empty() {
                                            Outcome::Going
                                        } else {
                                            handshake.on_data(&first)
                                        };
                                        slot.stage = Stage::Handshake(handshake);
                                        handshake_outcome(inner, slot, outcome, now);
                                    } else if let Some((echo, span)) =
                                        admit(inner, peer, host, arrival, &first, now)
                                    {
                                        slot.stage = Stage::Echo(Box::new(Conn::new(echo, recv)));
                                        slot.span = span;
                                    } else {
                                        header.done = true;
                                    }
                                }
                                Err(error) => {
                                    refuse(inner, &header.peer, Refusal::Header(error));
                                    header.done = true;
                                }
                            }
                        }
                        Got::End => {
                            if header.any {
                                refuse(inner, &header.peer, Refusal::Header(ProxyError::Missing));
                            } else {
                                tracing::debug!(peer = %header.peer, "closed before sending a PROXY header");
                            }
                            header.done = true;
                        }
                        Got::Failed(error) => {
                            refuse(inner, &header.peer, Refusal::Io(error));
                            header.done = true;
                        }
                        Got::Nothing => {}
                    }
                }
            }
        }
        if let Some(id) = buffer {
            self.pool.give_back(id);
        }
        self.settle(token.slot, now)
    }

    fn sent(&mut self, token: Token, result: i32, now: Instant) -> io::Result<()> {
        let Some(slot) = self.slot(token.slot, token.generation) else {
            return Ok(());
        };
        let result = if result < 0 {
            Err(io::Error::from_raw_os_error(-result))
        } else {
            Ok(result as usize)
        };
        match &mut slot.stage {
            Stage::Echo(conn) => {
                let _entered = slot.span.clone().entered();
                conn.on_sent(result, now);
            }
            Stage::Handshake(handshake) => handshake.on_sent(result),
            Stage::Header(_) => {}
        }
        self.settle(token.slot, now)
    }

    /// Runs the timers that are due.
    fn expire(&mut self, now: Instant) -> io::Result<()> {
        let inner = Arc::clone(&self.inner);
        while let Some(Reverse((at, index, generation))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slot(index, generation) else {
                continue;
            };
            if slot.armed != Some(at) {
                continue; // replaced by an earlier deadline, which ran
            }
            slot.armed = None;
            let _entered = slot.span.clone().entered();
            match &mut slot.stage {
                Stage::Echo(conn) => {
                    // A deadline that moved later is queued again by `settle`.
                    if conn.deadline().is_some_and(|due| due <= now) {
                        conn.on_timeout(now);
                    }
                }
                Stage::Handshake(handshake) => {
                    let outcome = handshake.on_timeout(now);
                    handshake_outcome(&inner, slot, outcome, now);
                }
                Stage::Header(header) => {
                    if !header.done && header.deadline <= now {
                        refuse(&inner, &header.peer, Refusal::TimedOut);
                        header.done = true;
                    }
                }
            }
            self.settle(index, now)?;
        }
        Ok(())
    }

    /// After anything happened to a slot: posts what it needs, re-arms its
    /// timer, and frees it once its socket may close.
    fn settle(&mut self, index: u32, now: Instant) -> io::Result<()> {
        let linger = self.inner.options.drive.linger;
        let Some(slot) = self.slots.get_mut(index as usize).and_then(Option::as_mut) else {
            return Ok(());
        };
        let generation = slot.generation;
        let fd = types::Fd(slot.socket.as_raw_fd());
        let recv_token = Token::new(Kind::Recv, generation, index);
        let send_token = Token::new(Kind::Send, generation, index);
        let (todo, deadline, finished, send) = match &mut slot.stage {
            Stage::Echo(conn) => {
                let _entered = slot.span.clone().entered();
                let todo = conn.step(now, linger);
                let send = todo.send.then(|| posted(conn.unsent()));
                (todo, conn.deadline(), conn.finished(), send)
            }
            Stage::Handshake(handshake) => {
                let todo = handshake.step();
                let send = todo.send.then(|| posted(handshake.unsent()));
                let finished = handshake.finished().then_some(End::Close);
                let deadline = (!handshake.over).then_some(handshake.deadline);
                (todo, deadline, finished, send)
            }
            Stage::Header(header) => {
                let mut todo = Todo::default();
                match (header.done, header.recv) {
                    (false, Recv::Idle) => {
                        header.recv = Recv::Armed;
                        todo.arm_recv = true;
                    }
                    (true, Recv::Armed) => {
                        header.recv = Recv::Cancelling;
                        todo.cancel_recv = true;
                    }
                    _ => {}
                }
                let finished = (header.done && header.recv == Recv::Idle).then_some(End::Close);
                (
                    todo,
                    (!header.done).then_some(header.deadline),
                    finished,
                    None,
                )
            }
        };
        if todo.shutdown_write {
            let _ = slot.socket.shutdown(Shutdown::Write);
        }
        if let Some(end) = finished {
            let slot = self.slots[index as usize].take().expect("present");
            if end == End::Reset
                && let Err(error) =
                    socket2::SockRef::from(&slot.socket).set_linger(Some(Duration::ZERO))
            {
                tracing::debug!(%error, "could not arm reset on close");
            }
            drop(slot.socket);
            if let Stage::Echo(mut conn) = slot.stage {
                let _entered = slot.span.entered();
                book_end(&self.inner, &conn.echo, &mut conn.seen);
            }
            self.generations[index as usize] = generation.wrapping_add(1);
            self.free.push(index);
            self.live -= 1;
            return Ok(());
        }
        if todo.arm_recv {
            // One completion per receive, not multishot: a multishot
            // receive goes on filling buffers until its cancellation is
            // seen (a peer that never reads then made a connection hold
            // megabytes), while one at a time keeps the echo's bound at
            // the high-water mark plus one read, as on epoll. It costs an
            // entry per read, not a system call: posted with the sends.
            let entry = opcode::Recv::new(fd, std::ptr::null_mut(), self.chunk)
                .buf_group(GROUP)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
                .user_data(recv_token.into());
            // SAFETY: the receive writes only into a buffer of the pool
            // (`chunk` bytes each), which outlives the ring.
            unsafe { push(&mut self.ring, &entry)? };
        }
        if todo.cancel_recv {
            self.cancel(recv_token)?;
        }
        if let Some((ptr, len)) = send {
            let entry = opcode::Send::new(fd, ptr, len)
                .flags(libc::MSG_NOSIGNAL)
                .build()
                .user_data(send_token.into());
            // SAFETY: the bytes are the connection's own `out` buffer, on
            // the heap, which nothing changes or frees until this send
            // completes (`Conn::is_sending`; the slot is not freed while it
            // is).
            unsafe { push(&mut self.ring, &entry)? };
        }
        if todo.cancel_send {
            self.cancel(send_token)?;
        }
        if let Some(at) = deadline
            && let Some(slot) = self.slots[index as usize].as_mut()
            && slot.armed.is_none_or(|armed| at < armed)
        {
            slot.armed = Some(at);
            self.timers.push(Reverse((at, index, generation)));
        }
        Ok(())
    }
}

/// A send's bytes as its entry takes them.
fn posted(bytes: &[u8]) -> (*const u8, u32) {
    (
        bytes.as_ptr(),
        u32::try_from(bytes.len()).unwrap_or(u32::MAX),
    )
}

/// What a receive's completion brought.
enum Got<'a> {
    /// Bytes, in a buffer of the pool.
    Data(&'a [u8]),
    /// The peer's end-of-file.
    End,
    /// The socket failed.
    Failed(io::Error),
    /// Nothing: no buffer was free, or the receive was cancelled.
    Nothing,
}

/// After a handshake step: a finished handshake is counted and its
/// connection admitted (the echo then runs over the session); a failed one
/// is counted and logged, and its socket closes once its alert went.
fn handshake_outcome(inner: &Inner, slot: &mut Slot, outcome: Outcome, now: Instant) {
    let Stage::Handshake(handshake) = &mut slot.stage else {
        return;
    };
    match outcome {
        Outcome::Going | Outcome::Over(None) => {}
        Outcome::Over(Some(failed)) => {
            handshake_failed(
                inner,
                &handshake.peer,
                &handshake.arrival,
                failed.why,
                &failed.reason,
            );
        }
        Outcome::Done(first) => {
            let (took, resumed, subject) = handshake.summary();
            inner.counters.tls_handshake(took, resumed);
            if resumed {
                tracing::debug!(peer = %handshake.peer, "TLS session resumed");
            }
            if !*inner.accepting.borrow() {
                handshake.over = true; // shut down during the handshake
                return;
            }
            let mut arrival = handshake.arrival.clone();
            arrival.client_subject = subject;
            let (peer, host) = (handshake.peer.clone(), handshake.host.clone());
            let Some((echo, span)) = admit(inner, peer, host, arrival, &first, now) else {
                handshake.over = true;
                return;
            };
            let (session, wire, recv) = handshake.take();
            slot.stage = Stage::Echo(Box::new(Conn::with_tls(
                echo,
                recv,
                tls::Tls::new(session),
                wire,
            )));
            slot.span = span;
        }
    }
}

/// The eventfd a loop sleeps on (see [`Loop::wake`]).
struct EventFd(std::fs::File);

impl EventFd {
    fn new() -> io::Result<Self> {
        // SAFETY: no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just made for us, owned by nothing else.
        Ok(Self(unsafe { std::fs::File::from_raw_fd(fd) }))
    }

    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

impl Nudge for EventFd {
    fn nudge(&self) {
        use std::io::Write;
        // Adds 1 to the counter; it cannot fill up in practice, and a
        // loop that is gone needs no waking.
        let _ = (&self.0).write_all(&1u64.to_ne_bytes());
    }
}
