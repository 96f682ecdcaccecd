//! The receive buffers a loop lends the kernel (provided buffers): one
//! pool per ring, not a buffer per connection, so an idle connection holds
//! none. A multishot receive picks a free one per completion; the loop
//! hands it to the core (which copies what it keeps) and gives it back.

use io_uring::{IoUring, opcode, squeue};

use super::token::{Kind, Token};

/// The buffer group the receives select from.
pub(super) const GROUP: u16 = 0;

/// `count` buffers of `size` bytes in one allocation. Pages never used
/// stay unmapped (the allocation is zeroed lazily by the system).
pub(super) struct Pool {
    memory: Vec<u8>,
    size: usize,
    count: u16,
}

impl Pool {
    pub(super) fn new(count: u16, size: usize) -> Self {
        Self {
            memory: vec![0; usize::from(count) * size],
            size,
            count,
        }
    }

    /// The first `len` bytes of buffer `id`, as a completion filled them.
    pub(super) fn filled(&self, id: u16, len: usize) -> &[u8] {
        let start = usize::from(id) * self.size;
        &self.memory[start..start + len.min(self.size)]
    }

    /// Whether `id` names one of the pool's buffers.
    pub(super) fn holds(&self, id: u16) -> bool {
        id < self.count
    }

    /// Lends every buffer to the kernel.
    pub(super) fn provide_all(&mut self, ring: &mut IoUring) -> std::io::Result<()> {
        self.provide(ring, 0, self.count)
    }

    /// Gives buffer `id` back to the kernel once its bytes were taken.
    pub(super) fn give_back(&mut self, ring: &mut IoUring, id: u16) -> std::io::Result<()> {
        self.provide(ring, id, 1)
    }

    fn provide(&mut self, ring: &mut IoUring, first: u16, n: u16) -> std::io::Result<()> {
        let start = usize::from(first) * self.size;
        let addr = self.memory[start..].as_mut_ptr();
        let len = i32::try_from(self.size).unwrap_or(i32::MAX);
        let entry = opcode::ProvideBuffers::new(addr, len, n, GROUP, first)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(Token::new(Kind::Provide, 0, 0).into());
        // SAFETY: the buffers are inside `memory`, which lives as long as
        // the loop that owns both the pool and the ring; a loop that stops
        // with operations still posted leaks the pool instead of freeing it
        // (see `Loop::run`).
        unsafe { super::push(ring, &entry) }
    }
}
