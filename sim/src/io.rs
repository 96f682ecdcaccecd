//! turmoil's sockets in `echo-net`'s traits, plus what turmoil's TCP does not
//! do by itself: merged reads, short writes and random read sizes, so the
//! driver meets real-TCP chunking down to one byte.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use echo_net::{Accepted, Listener, Spawner, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How a simulated stream bends turmoil's one-write-one-segment behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoKnobs {
    /// Each read returns at most a random 1..=`max_read` bytes.
    pub max_read: usize,
    /// Merge consecutive ready segments into one read (as real TCP does).
    pub coalesce: bool,
    /// Each write takes at most a random 1..=`max_write` bytes.
    pub max_write: usize,
    /// Per mille of reads and writes that hiccup instead (see [`Hiccup`]).
    pub hiccups: u16,
    /// Hiccups may be `Interrupted` and `WouldBlock` errors (not under
    /// TLS, whose layer passes them on as failures).
    pub hiccup_errors: bool,
}

/// What a socket may do instead of a read or a write, as real ones do now
/// and then: the driver must carry on as if nothing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hiccup {
    /// `Interrupted` (a signal): try again.
    Interrupted,
    /// `WouldBlock` with no waker registered: try again later.
    WouldBlock,
    /// `Pending` with the task woken at once: a spurious wake-up.
    SpuriousWake,
    /// A write that takes one byte.
    OneByte,
}

thread_local! {
    /// Bytes read and written by simulated sockets on this thread (turmoil
    /// polls every host on one): a task's progress in one poll is the
    /// change across it.
    static MOVED: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    /// The hiccups and other fault points that fired in the current case.
    static FIRED: RefCell<crate::coverage::Coverage> = RefCell::new(crate::coverage::Coverage::default());
}

/// (bytes read, bytes written) on this thread so far.
pub(crate) fn moved() -> (u64, u64) {
    MOVED.with(std::cell::Cell::get)
}

fn count_moved(read: usize, written: usize) {
    MOVED.with(|m| {
        let (r, w) = m.get();
        m.set((r + read as u64, w + written as u64));
    });
}

/// Counts a fault point that fired.
pub(crate) fn fired(label: &str) {
    FIRED.with(|f| f.borrow_mut().hit(label));
}

/// The fault points that fired since the last call, each counted once
/// (a case that hit one at all).
pub(crate) fn take_fired() -> crate::coverage::Coverage {
    let all = FIRED.with(|f| std::mem::take(&mut *f.borrow_mut()));
    all.once_each()
}

impl IoKnobs {
    /// No bending: turmoil's own behaviour.
    pub const PLAIN: Self = Self {
        max_read: usize::MAX,
        coalesce: false,
        max_write: usize::MAX,
        hiccups: 0,
        hiccup_errors: false,
    };
}

/// A small deterministic generator (xorshift64*), seeded per stream.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `1..=max`.
    pub(crate) fn upto(&mut self, max: usize) -> usize {
        if max == usize::MAX {
            return max;
        }
        1 + (self.next() % max as u64) as usize
    }
}

/// What a client holds of its echo: bytes read from the socket less bytes
/// its application took, at its highest right after a read.
#[derive(Debug, Default)]
pub struct Held {
    read: AtomicUsize,
    delivered: AtomicUsize,
    peak: AtomicUsize,
    /// Bytes read when the application side failed, if it did.
    broke_at: std::sync::OnceLock<usize>,
}

impl Held {
    /// The application side failed now (the first failure counts).
    pub fn broke(&self) {
        let _ = self.broke_at.set(self.read.load(Ordering::Relaxed));
    }

    /// Bytes read from the socket when the application side failed, and
    /// since: `None` if it never failed.
    #[must_use]
    pub fn read_since_break(&self) -> Option<(usize, usize)> {
        let at = *self.broke_at.get()?;
        Some((at, self.read.load(Ordering::Relaxed) - at))
    }

    /// The application took `n` bytes.
    pub fn delivered(&self, n: usize) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
    }

    /// The most bytes held at once.
    #[must_use]
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn read(&self, n: usize) {
        let read = self.read.fetch_add(n, Ordering::Relaxed) + n;
        let held = read.saturating_sub(self.delivered.load(Ordering::Relaxed));
        self.peak.fetch_max(held, Ordering::Relaxed);
    }
}

/// A turmoil TCP stream with [`IoKnobs`] applied.
#[derive(Debug)]
pub struct SimStream {
    inner: turmoil::net::TcpStream,
    knobs: IoKnobs,
    rng: Rng,
    /// End-of-file or an error seen while merging, reported on the next read.
    deferred: Option<io::Result<()>>,
    /// How long a shutdown has left to wait for room for its FIN.
    fin_wait: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Where the largest read before a shutdown is recorded, if anywhere.
    largest_read: Option<Arc<AtomicUsize>>,
    /// A shutdown was asked for: later reads drain a closing connection.
    shut: bool,
    /// Counts what is read against what the application took, if set.
    held: Option<Arc<Held>>,
}

/// The longest a shutdown waits for the peer to make room for its FIN
/// before sending it anyway (simulated time).
const FIN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl SimStream {
    /// Wraps `inner`; `seed` drives the random sizes.
    pub fn new(inner: turmoil::net::TcpStream, knobs: IoKnobs, seed: u64) -> Self {
        Self {
            inner,
            knobs,
            rng: Rng::new(seed),
            deferred: None,
            fin_wait: None,
            largest_read: None,
            shut: false,
            held: None,
        }
    }

    /// Counts every byte read into `held`.
    #[must_use]
    pub fn measure_held(mut self, held: Arc<Held>) -> Self {
        self.held = Some(held);
        self
    }
}

impl SimStream {
    /// Whether this read or write hiccups, and how.
    fn hiccup(&mut self, write: bool) -> Option<Hiccup> {
        if self.knobs.hiccups == 0 || self.rng.next() % 1_000 >= u64::from(self.knobs.hiccups) {
            return None;
        }
        let kinds: &[Hiccup] = match (self.knobs.hiccup_errors, write) {
            (true, true) => &[
                Hiccup::Interrupted,
                Hiccup::WouldBlock,
                Hiccup::SpuriousWake,
                Hiccup::OneByte,
            ],
            (true, false) => &[
                Hiccup::Interrupted,
                Hiccup::WouldBlock,
                Hiccup::SpuriousWake,
            ],
            (false, true) => &[Hiccup::SpuriousWake, Hiccup::OneByte],
            (false, false) => &[Hiccup::SpuriousWake],
        };
        Some(kinds[(self.rng.next() % kinds.len() as u64) as usize])
    }
}

impl Hiccup {
    /// What the socket returns instead of doing `what`.
    fn on<T>(self, cx: &mut Context<'_>, what: &str) -> Poll<io::Result<T>> {
        match self {
            Self::Interrupted => {
                fired(&format!("io hiccup: {what} Interrupted"));
                Poll::Ready(Err(io::ErrorKind::Interrupted.into()))
            }
            Self::WouldBlock => {
                fired(&format!("io hiccup: {what} WouldBlock"));
                Poll::Ready(Err(io::ErrorKind::WouldBlock.into()))
            }
            Self::SpuriousWake | Self::OneByte => {
                fired(&format!("io hiccup: {what} spurious wake-up"));
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

/// A simulated socket's flush does nothing, as a real one's: the driver
/// skips it here as it does on real sockets.
impl Stream for SimStream {
    fn buffers_writes(&self) -> bool {
        false
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(deferred) = this.deferred.take() {
            return Poll::Ready(deferred);
        }
        if let Some(hiccup) = this.hiccup(false) {
            return hiccup.on::<()>(cx, "read");
        }
        let cap = this.rng.upto(this.knobs.max_read).min(buf.remaining());
        let mut tmp = vec![0u8; cap];
        let mut filled = 0;
        while filled < cap {
            let mut part = ReadBuf::new(&mut tmp[filled..]);
            match Pin::new(&mut this.inner).poll_read(cx, &mut part) {
                Poll::Ready(Ok(())) if part.filled().is_empty() => {
                    if filled > 0 {
                        this.deferred = Some(Ok(()));
                    }
                    break;
                }
                Poll::Ready(Ok(())) => {
                    filled += part.filled().len();
                    if !this.knobs.coalesce {
                        break;
                    }
                }
                Poll::Ready(Err(e)) if filled == 0 => return Poll::Ready(Err(e)),
                Poll::Ready(Err(e)) => {
                    this.deferred = Some(Err(e));
                    break;
                }
                Poll::Pending if filled == 0 => return Poll::Pending,
                Poll::Pending => break,
            }
        }
        buf.put_slice(&tmp[..filled]);
        count_moved(filled, 0);
        if let Some(largest) = this.largest_read.as_ref().filter(|_| !this.shut) {
            largest.fetch_max(filled, Ordering::Relaxed);
        }
        if let Some(held) = &this.held {
            held.read(filled);
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut n = this.rng.upto(this.knobs.max_write).min(buf.len());
        match this.hiccup(true) {
            Some(Hiccup::OneByte) => {
                fired("io hiccup: one-byte write");
                n = n.min(1);
            }
            Some(hiccup) => return hiccup.on(cx, "write"),
            None => {}
        }
        let wrote = Pin::new(&mut this.inner).poll_write(cx, &buf[..n]);
        if let Poll::Ready(Ok(n)) = wrote {
            count_moved(0, n);
        }
        wrote
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    /// Sends FIN once the peer has room for it.
    ///
    /// turmoil 0.7.2 strands a FIN for good when it lands while the peer's
    /// receive channel is full: a FIN takes no flow-control credit, and
    /// `StreamSocket::buffer` (host.rs) retries a segment it could not queue
    /// only when another one arrives, which never happens after a FIN. The
    /// peer then waits for that end-of-file forever. Real TCP sends its FIN
    /// after the data before it, as the window opens; so does this: it waits
    /// for one credit (credits plus segments in flight equal the channel's
    /// capacity, so the FIN will fit). A peer that makes no room within
    /// `FIN_WAIT` (it stopped reading, or it is gone) gets the FIN anyway,
    /// so a shutdown never hangs on it.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.shut = true;
        let room = std::pin::pin!(this.inner.writable()).poll(cx);
        if room.is_pending() {
            let deadline = this
                .fin_wait
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(FIN_WAIT)));
            if deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        this.fin_wait = None;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A turmoil listener whose accepted streams get [`IoKnobs`].
pub struct SimListener {
    inner: turmoil::net::TcpListener,
    knobs: IoKnobs,
    rng: RefCell<Rng>,
    largest_read: Option<Arc<AtomicUsize>>,
    /// Accept failures of the whole listener injected so far (out of file
    /// descriptors): each must be warned of, thinned, and backed off.
    accept_failures: Option<Rc<Cell<usize>>>,
}

impl SimListener {
    /// Wraps `inner`.
    pub fn new(inner: turmoil::net::TcpListener, knobs: IoKnobs, seed: u64) -> Self {
        Self {
            inner,
            knobs,
            rng: RefCell::new(Rng::new(seed)),
            largest_read: None,
            accept_failures: None,
        }
    }

    /// Injects accept errors among the hiccups (where errors may be
    /// injected: `hiccup_errors`): a connection that was reset before it
    /// was accepted (`ConnectionAborted`: the next accept goes on at once)
    /// and the process out of file descriptors (`EMFILE`: the accept loop
    /// warns and backs off), counting the latter in `failures`. Neither
    /// takes a waiting connection away.
    #[must_use]
    pub fn accept_errors(mut self, failures: Rc<Cell<usize>>) -> Self {
        self.accept_failures = Some(failures);
        self
    }

    /// Records in `largest` the most bytes any accepted stream returned
    /// from one read before its shutdown: what an echo server must have
    /// held in its output buffer at once, a lower bound on the peak it
    /// reports.
    #[must_use]
    pub fn measure_reads(mut self, largest: Arc<AtomicUsize>) -> Self {
        self.largest_read = Some(largest);
        self
    }
}

impl Listener for SimListener {
    type Stream = SimStream;

    async fn accept(&self) -> io::Result<Accepted<SimStream>> {
        // Now and then the accept loop is sent away once before a
        // connection that is already waiting.
        // One draw per accept, as before errors were injected: each seed's
        // streams stay what they were.
        let roll = if self.knobs.hiccups > 0 {
            self.rng.borrow_mut().next() % 1_000
        } else {
            u64::MAX
        };
        let early = 10 * u64::from(self.knobs.hiccups);
        if roll < early {
            fired("accept: early Pending");
            tokio::task::yield_now().await;
        }
        if let Some(failures) = self
            .accept_failures
            .as_ref()
            .filter(|_| self.knobs.hiccup_errors)
        {
            let aborted = early + 2 * u64::from(self.knobs.hiccups);
            if roll >= early && roll < aborted {
                fired("accept: connection aborted");
                return Err(io::ErrorKind::ConnectionAborted.into());
            }
            if roll >= aborted && roll < aborted + u64::from(self.knobs.hiccups) {
                fired("accept: out of file descriptors");
                failures.set(failures.get() + 1);
                return Err(io::Error::from_raw_os_error(24)); // EMFILE
            }
        }
        let (stream, peer) = self.inner.accept().await?;
        let host = stream.local_addr()?;
        let seed = self.rng.borrow_mut().next();
        let mut stream = SimStream::new(stream, self.knobs, seed);
        stream.largest_read.clone_from(&self.largest_read);
        Ok(Accepted {
            stream,
            peer: peer.into(),
            host: host.into(),
        })
    }
}

/// Panic messages caught in spawned tasks.
pub type Panics = Rc<RefCell<Vec<String>>>;

/// Spawns with `spawn_local` (torn down in a deterministic order on crash,
/// unlike `tokio::spawn`), and records panics instead of letting turmoil
/// swallow them, so any panic fails the case. With `quantum`, a connection
/// task that reads more than that many bytes in one poll fails the case
/// too: its read budget is what lets the other connections have their
/// turn while one peer keeps its socket full.
#[derive(Debug, Clone, Default)]
pub struct LocalSpawner {
    /// Where panics go.
    pub panics: Panics,
    /// The most bytes a task may read in one poll, if bounded.
    pub quantum: Option<u64>,
}

impl Spawner for LocalSpawner {
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        tokio::task::spawn_local(CatchPanic {
            inner: Box::pin(task),
            panics: Rc::clone(&self.panics),
            quantum: self.quantum,
            idle_polls: 0,
            idle_since: None,
        });
    }
}

/// Polls in a row at one simulated instant that move no byte after which
/// a task is taken for a busy loop: a task woken over and over with nothing
/// to do spins a core in a real server (and here stops simulated time,
/// which advances only when every task waits). Legitimate wake-ups without
/// I/O (a timer, the close signal, the spurious wake-ups the sockets
/// inject) come nowhere near it at one instant.
pub(crate) const BUSY_POLLS: u32 = 2_000;

/// Polls `inner`, turning a panic into a recorded message, and stops it
/// with a recorded message when it reads more than `quantum` bytes in one
/// poll or spins ([`BUSY_POLLS`]).
pub(crate) struct CatchPanic<F> {
    pub(crate) inner: Pin<Box<F>>,
    pub(crate) panics: Panics,
    pub(crate) quantum: Option<u64>,
    /// Polls without progress at the instant `idle_since`.
    pub(crate) idle_polls: u32,
    pub(crate) idle_since: Option<tokio::time::Instant>,
}

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let before = moved();
        let poll = match catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                this.panics.borrow_mut().push(message);
                return Poll::Ready(());
            }
        };
        let after = moved();
        let (read, written) = (after.0 - before.0, after.1 - before.1);
        if let Some(quantum) = this.quantum
            && read > quantum
        {
            this.panics.borrow_mut().push(format!(
                "unfair: a connection read {read} bytes in one turn, above its read budget \
                 and one read ({quantum}): a peer that keeps its socket full starves the others"
            ));
            return Poll::Ready(());
        }
        let instant = tokio::time::Instant::now();
        if read + written > 0 || poll.is_ready() || this.idle_since != Some(instant) {
            this.idle_polls = 0;
            this.idle_since = Some(instant);
        } else {
            this.idle_polls += 1;
            if this.idle_polls > BUSY_POLLS {
                this.panics.borrow_mut().push(format!(
                    "busy loop: a task was polled {BUSY_POLLS} times in a row at one instant \
                     without moving a byte"
                ));
                return Poll::Ready(());
            }
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::{IoKnobs, SimStream};

    /// The server's receive channel holds `tcp_capacity` segments; the
    /// client fills it and shuts down while the server is not reading.
    /// Returns whether the server then read everything up to end-of-file.
    fn fin_after_a_full_window(wrap: bool) -> bool {
        let mut sim = turmoil::Builder::new()
            .tcp_capacity(2)
            .simulation_duration(Duration::from_secs(20))
            .build();
        let saw_eof = Rc::new(Cell::new(false));
        let flag = Rc::clone(&saw_eof);
        sim.host("server", move || {
            let flag = Rc::clone(&flag);
            async move {
                let listener = turmoil::net::TcpListener::bind(("0.0.0.0", 7)).await?;
                let (mut stream, _) = listener.accept().await?;
                // Not reading while the client fills the window and closes.
                tokio::time::sleep(Duration::from_secs(1)).await;
                let mut all = Vec::new();
                stream.read_to_end(&mut all).await?;
                flag.set(all == b"ab");
                Ok(())
            }
        });
        sim.client("client", async move {
            let stream = turmoil::net::TcpStream::connect(("server", 7)).await?;
            if wrap {
                let mut stream = SimStream::new(stream, IoKnobs::PLAIN, 1);
                stream.write_all(b"a").await?;
                stream.write_all(b"b").await?;
                stream.shutdown().await?;
            } else {
                let mut stream = stream;
                stream.write_all(b"a").await?;
                stream.write_all(b"b").await?;
                stream.shutdown().await?;
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        });
        sim.run().expect("the simulation runs");
        saw_eof.get()
    }

    #[test]
    fn a_fin_after_a_full_window_is_not_stranded() {
        assert!(
            !fin_after_a_full_window(false),
            "turmoil no longer strands this FIN: the SimStream workaround can go"
        );
        assert!(fin_after_a_full_window(true), "the FIN was stranded");
    }
}
