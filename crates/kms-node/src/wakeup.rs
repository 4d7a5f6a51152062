//! When the daemon's services run again: each owns its loop (the chain follower, the duties,
//! the block notifier) and waits between two steps on its [`Wakeups`].

use std::{sync::Arc, time::Duration};

use tokio::sync::{watch, Notify};

/// A service's wake-ups: a new block (told by the block notifier on a WebSocket endpoint), the
/// poll interval otherwise, until the daemon shuts down. Clones share the new-block signal.
#[derive(Debug, Clone)]
pub struct Wakeups {
    new_block: Arc<Notify>,
    poll: Duration,
    shutdown: watch::Receiver<bool>,
}

impl Wakeups {
    /// Wake-ups every `poll`, or at a new block, until `shutdown` turns true.
    pub fn new(poll: Duration, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            new_block: Arc::new(Notify::new()),
            poll,
            shutdown,
        }
    }

    /// Wakes every service waiting in [`next`](Self::next) now (a new block arrived); one not
    /// waiting at this moment waits for the next block or its poll interval.
    pub fn notify_new_block(&self) {
        self.new_block.notify_waiters();
    }

    /// Resolves once the daemon shuts down (at once if it is already shutting down).
    pub async fn shutdown(&mut self) {
        let _ = self.shutdown.wait_for(|&stop| stop).await;
    }

    /// Whether the daemon is shutting down.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits for a new block or the poll interval: `false` if the daemon shuts down first.
    pub async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.shutdown.wait_for(|&stop| stop) => false,
            _ = self.new_block.notified() => true,
            _ = tokio::time::sleep(self.poll) => true,
        }
    }
}
