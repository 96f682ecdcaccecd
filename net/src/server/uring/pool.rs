//! The receive buffers a loop lends the kernel (provided buffers): one
//! pool per ring, not a buffer per connection, so an idle connection holds
//! none. A receive picks a free one as it completes; the loop hands it to
//! the core (which copies what it keeps) and gives it back.
//!
//! The kernel takes the buffers in turn, so every buffer of the pool ends
//! up resident: the pool starts small and grows, by a block at a time,
//! only when receives find none free (`ENOBUFS`), that is when more
//! connections complete a receive in one turn of the loop than it has
//! buffers. A receive that finds none is posted again, but it lost its
//! turn: with a pool that could not grow (128 buffers at 1,000 busy
//! connections) the unlucky ones lost it turn after turn, and the p99
//! was 180 ms against 27 with 1,024 buffers.

use io_uring::{IoUring, opcode, squeue};

use super::token::{Kind, Token};

/// The buffer group the receives select from.
pub(super) const GROUP: u16 = 0;
/// Buffers per block: the pool starts with one. Small, because the kernel
/// takes them in turn (first in, first out): every receive lands in the
/// buffer used longest ago, so the more there are, the colder each is in
/// the cache (with 128 of 16 KiB, 10 connections echoing 64 KiB spent 31 %
/// of the server's time in the kernel copying into them).
const BLOCK: u16 = 16;
/// The most buffers a pool grows to (64 MiB at 16 KiB each).
const MAX_BUFFERS: u16 = 4096;

/// Blocks of `BLOCK` buffers of `size` bytes. Pages never used stay
/// unmapped (a block is zeroed lazily by the system).
pub(super) struct Pool {
    blocks: Vec<Vec<u8>>,
    size: usize,
}

impl Pool {
    pub(super) fn new(size: usize) -> Self {
        Self {
            blocks: Vec::new(),
            size,
        }
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
    pub(super) fn grow(&mut self, ring: &mut IoUring) -> std::io::Result<bool> {
        if self.len() + usize::from(BLOCK) > usize::from(MAX_BUFFERS) {
            return Ok(false);
        }
        self.blocks.push(vec![0; usize::from(BLOCK) * self.size]);
        let first = u16::try_from(self.len() - usize::from(BLOCK)).expect("at most MAX_BUFFERS");
        self.provide(ring, first, BLOCK)?;
        Ok(true)
    }

    /// Gives buffer `id` back to the kernel once its bytes were taken.
    pub(super) fn give_back(&mut self, ring: &mut IoUring, id: u16) -> std::io::Result<()> {
        self.provide(ring, id, 1)
    }

    fn provide(&mut self, ring: &mut IoUring, first: u16, n: u16) -> std::io::Result<()> {
        let (block, start) = self.place(first);
        let addr = self.blocks[block][start..].as_mut_ptr();
        let len = i32::try_from(self.size).unwrap_or(i32::MAX);
        let entry = opcode::ProvideBuffers::new(addr, len, n, GROUP, first)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Token::new(Kind::Provide, 0, 0).into());
        // SAFETY: the buffers are inside a block of the pool, which is
        // never shrunk (a block's allocation never moves) and lives as long
        // as the loop that owns both the pool and the ring; a loop that
        // stops with operations still posted leaks the pool instead of
        // freeing it (see `EchoServer::serve_uring`).
        unsafe { super::push(ring, &entry) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_ids_map_to_their_block_and_offset() {
        let mut pool = Pool::new(16);
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
