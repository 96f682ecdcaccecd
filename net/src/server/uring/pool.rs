//! The receive buffers a loop lends the kernel (provided buffers): one
//! pool per ring, not a buffer per connection, so an idle connection holds
//! none. A receive picks a free one as it completes; the loop hands it to
//! the core (which copies what it keeps) and gives it back.
//!
//! The kernel takes the buffers in turn, so every buffer of the pool ends
//! up resident: the pool starts small and grows, by as many as were
//! missing, only when receives find none free (`ENOBUFS`), that is when more
//! connections complete a receive in one turn of the loop than it has
//! buffers. A receive that finds none is posted again, but it lost its
//! turn: with a pool that could not grow (128 buffers at 1,000 busy
//! connections) the unlucky ones lost it turn after turn, and the p99
//! was 180 ms against 27 with 1,024 buffers.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;
use io_uring::types::BufRingEntry;

/// The buffer group the receives select from.
pub(super) const GROUP: u16 = 0;
/// Buffers per block: the pool starts with one. Small, because the kernel
/// takes them in turn (first in, first out), so every buffer of the pool
/// ends up resident: its size follows the load, not a guess.
const BLOCK: u16 = 16;
/// The most buffers a pool grows to (64 MiB at 16 KiB each): the size of
/// the ring the buffers are lent through.
const MAX_BUFFERS: u16 = 4096;

/// Blocks of `BLOCK` buffers of `size` bytes, lent through a buffer ring
/// registered with the kernel: giving one back is a store to memory the
/// kernel reads, not an operation it must run (as `PROVIDE_BUFFERS` was:
/// an entry, an allocation and a lookup in the kernel per echo). Pages
/// never used stay unmapped (a block is zeroed lazily by the system).
pub(super) struct Pool {
    blocks: Vec<Vec<u8>>,
    size: usize,
    /// The ring's entries, page-aligned, shared with the kernel.
    ring: *mut BufRingEntry,
    /// Our copy of the ring's tail (the kernel's is in the first entry).
    tail: u16,
}

/// The ring's memory: `MAX_BUFFERS` entries, page-aligned.
fn ring_layout() -> Layout {
    Layout::from_size_align(usize::from(MAX_BUFFERS) * size_of::<BufRingEntry>(), 4096)
        .expect("a valid layout")
}

impl Pool {
    /// A pool lending buffers of `size` bytes through a ring registered
    /// on `uring`, with its first block.
    pub(super) fn new(uring: &mut IoUring, size: usize) -> std::io::Result<Self> {
        // SAFETY: a non-zero size.
        let ring = unsafe { alloc_zeroed(ring_layout()) }.cast::<BufRingEntry>();
        if ring.is_null() {
            return Err(std::io::ErrorKind::OutOfMemory.into());
        }
        let pool = Self {
            blocks: Vec::new(),
            size,
            ring,
            tail: 0,
        };
        // SAFETY: the ring is page-aligned, zeroed, `MAX_BUFFERS` entries
        // long, and outlives the registration (see `Drop`).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(ring as u64, MAX_BUFFERS, GROUP, 0)?
        };
        let mut pool = pool;
        pool.grow();
        Ok(pool)
    }

    /// The first `len` bytes of buffer `id`, as a completion filled them.
    pub(super) fn filled(&self, id: u16, len: usize) -> &[u8] {
        let (block, start) = self.place(id);
        &self.blocks[block][start..start + len.min(self.size)]
    }

    /// Whether `id` names one of the pool's buffers.
    pub(super) fn holds(&self, id: u16) -> bool {
        usize::from(id / BLOCK) < self.blocks.len()
    }

    /// Buffers in the pool.
    pub(super) fn len(&self) -> usize {
        self.blocks.len() * usize::from(BLOCK)
    }

    fn place(&self, id: u16) -> (usize, usize) {
        (usize::from(id / BLOCK), usize::from(id % BLOCK) * self.size)
    }

    /// Adds a block of buffers and lends them to the kernel; `false` once
    /// the pool is as large as it may grow.
    pub(super) fn grow(&mut self) -> bool {
        if self.len() + usize::from(BLOCK) > usize::from(MAX_BUFFERS) {
            return false;
        }
        self.blocks.push(vec![0; usize::from(BLOCK) * self.size]);
        let first = u16::try_from(self.len() - usize::from(BLOCK)).expect("at most MAX_BUFFERS");
        for id in first..first + BLOCK {
            self.lend(id);
        }
        self.publish();
        true
    }

    /// Gives buffer `id` back to the kernel once its bytes were taken
    /// (seen by the kernel at the next [`publish`](Self::publish)).
    pub(super) fn give_back(&mut self, id: u16) {
        self.lend(id);
    }

    fn lend(&mut self, id: u16) {
        let (block, start) = self.place(id);
        let addr = self.blocks[block][start..].as_mut_ptr();
        let index = usize::from(self.tail & (MAX_BUFFERS - 1));
        // SAFETY: `index` is inside the ring, whose entries only this
        // thread writes; the kernel reads an entry only once the tail
        // published past it, and never more than `MAX_BUFFERS` are lent
        // (each buffer is lent once at a time, and there are at most that
        // many), so this entry is not one the kernel may still read.
        let entry = unsafe { &mut *self.ring.add(index) };
        entry.set_addr(addr as u64);
        entry.set_len(u32::try_from(self.size).unwrap_or(u32::MAX));
        entry.set_bid(id);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Lets the kernel see every buffer lent since the last call.
    pub(super) fn publish(&mut self) {
        // SAFETY: the tail is a properly aligned `u16` in the ring's first
        // entry, which the kernel reads and this thread alone writes.
        let tail = unsafe { &*BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The loop drops its ring first (declared after the pool), which
        // unregisters the buffer ring with it; a loop that stopped with
        // receives still posted leaks the pool instead (`serve_uring`).
        // SAFETY: allocated in `new` with this layout.
        unsafe { dealloc(self.ring.cast(), ring_layout()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_ids_map_to_their_block_and_offset() {
        let mut uring = IoUring::new(8).expect("io_uring (the kernel is checked by probe)");
        let mut pool = Pool::new(&mut uring, 16).unwrap();
        pool.blocks.clear();
        pool.blocks.push(vec![1; usize::from(BLOCK) * 16]);
        pool.blocks.push(vec![2; usize::from(BLOCK) * 16]);
        assert_eq!(pool.len(), 32);
        assert!(pool.holds(31) && !pool.holds(32));
        assert_eq!(pool.place(BLOCK + 3), (1, 48));
        assert_eq!(
            pool.filled(BLOCK + 3, 100),
            &[2; 16][..],
            "never past its buffer"
        );
        assert_eq!(pool.filled(0, 4), &[1; 4][..]);
    }
}
