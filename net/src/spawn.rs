//! How the accept loop starts a task per connection.

use std::future::Future;

/// Starts a connection's task. Production uses [`TokioSpawner`]; a simulation
/// injects `spawn_local`, whose teardown order is deterministic.
pub trait Spawner: Clone + 'static {
    /// Runs `task` in the background.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F);
}

/// [`tokio::spawn`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioSpawner;

impl Spawner for TokioSpawner {
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F) {
        tokio::spawn(task);
    }
}
