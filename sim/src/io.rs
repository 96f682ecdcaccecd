//! turmoil's sockets in `echo-net`'s traits, plus what turmoil's TCP does not
//! do by itself: merged reads, short writes and random read sizes, so the
//! driver meets real-TCP chunking down to one byte.

use std::cell::RefCell;
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
}

impl IoKnobs {
    /// No bending: turmoil's own behaviour.
    pub const PLAIN: Self = Self {
        max_read: usize::MAX,
        coalesce: false,
        max_write: usize::MAX,
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
        let n = this.rng.upto(this.knobs.max_write).min(buf.len());
        Pin::new(&mut this.inner).poll_write(cx, &buf[..n])
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
    /// [`FIN_WAIT`] (it stopped reading, or it is gone) gets the FIN anyway,
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
}

impl SimListener {
    /// Wraps `inner`.
    pub fn new(inner: turmoil::net::TcpListener, knobs: IoKnobs, seed: u64) -> Self {
        Self {
            inner,
            knobs,
            rng: RefCell::new(Rng::new(seed)),
            largest_read: None,
        }
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
/// swallow them, so any panic fails the case.
#[derive(Debug, Clone, Default)]
pub struct LocalSpawner {
    /// Where panics go.
    pub panics: Panics,
}

impl Spawner for LocalSpawner {
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        tokio::task::spawn_local(CatchPanic {
            inner: Box::pin(task),
            panics: Rc::clone(&self.panics),
        });
    }
}

/// Polls `inner`, turning a panic into a recorded message.
pub(crate) struct CatchPanic<F> {
    pub(crate) inner: Pin<Box<F>>,
    pub(crate) panics: Panics,
}

impl<F: Future<Output = ()>> Future for CatchPanic<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        match catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_owned());
                this.panics.borrow_mut().push(message);
                Poll::Ready(())
            }
        }
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
