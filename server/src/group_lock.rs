//! One writer per group: the relay is each group's sequencer.
//!
//! A commit or message holds its group's lock across its checks and its
//! store write only, so epochs advance one commit at a time and sequence
//! numbers follow write order. It then takes a [`Publication`], its place in
//! the group's publication order, and lets the lock go: the durable flush
//! runs outside the lock, so every write of a group made while one fsync
//! runs shares the next one (group commit) instead of each waiting for its
//! own. Live fan-out waits for the durable flush and then for the group's
//! previous publication, so devices still see a group's items in sequence
//! order and nothing is delivered before it is durable. Different groups
//! proceed in parallel. Entries of idle groups are dropped from the map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cascade_protocol::GroupId;
use tokio::sync::{oneshot, OwnedMutexGuard};

/// The group's writer lock, guarding the completion signal of the group's
/// latest publication (if any is still running).
type GroupMutex = Arc<tokio::sync::Mutex<Option<oneshot::Receiver<()>>>>;

/// The per-group writer locks.
#[derive(Default)]
pub struct GroupLocks {
    locks: Mutex<HashMap<GroupId, GroupMutex>>,
}

/// Holds a group's writer lock until dropped.
pub struct GroupGuard<'a> {
    locks: &'a GroupLocks,
    group_id: GroupId,
    mutex: GroupMutex,
    guard: Option<OwnedMutexGuard<Option<oneshot::Receiver<()>>>>,
}

/// A write's place in its group's publication order, taken under the
/// writer lock and kept after it is released. [`Publication::turn`] returns
/// once every earlier publication of the group has finished; dropping the
/// publication lets the next one go.
pub struct Publication<'a> {
    locks: &'a GroupLocks,
    group_id: GroupId,
    /// Keeps the group's entry in the map while the publication runs.
    mutex: GroupMutex,
    previous: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
}

impl GroupLocks {
    /// Waits for and takes the writer lock of `group_id`.
    pub async fn lock(&self, group_id: GroupId) -> GroupGuard<'_> {
        let mutex = {
            let mut locks = self.locks.lock().expect("group lock map poisoned");
            Arc::clone(locks.entry(group_id).or_default())
        };
        let guard = Arc::clone(&mutex).lock_owned().await;
        GroupGuard {
            locks: self,
            group_id,
            mutex,
            guard: Some(guard),
        }
    }

    /// Drops the entry of `group_id` if only the map (and the caller's
    /// `mutex`) refer to it.
    fn release(&self, group_id: GroupId, mutex: &GroupMutex) {
        let mut locks = self.locks.lock().expect("group lock map poisoned");
        // The map and the caller hold the only references: nobody waits, no
        // publication runs, and nobody can start waiting while we hold the
        // map's lock.
        if Arc::strong_count(mutex) == 2 {
            locks.remove(&group_id);
        }
    }

    /// How many groups currently have a lock entry (for tests).
    pub fn len(&self) -> usize {
        self.locks.lock().expect("group lock map poisoned").len()
    }

    /// Whether no group has a lock entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<'a> GroupGuard<'a> {
    /// Takes the next place in the group's publication order (call after
    /// the store write, before releasing the lock).
    pub fn publication(&mut self) -> Publication<'a> {
        let (done, signal) = oneshot::channel();
        let previous = self
            .guard
            .as_mut()
            .expect("the guard is held until dropped")
            .replace(signal);
        Publication {
            locks: self.locks,
            group_id: self.group_id,
            mutex: Arc::clone(&self.mutex),
            previous,
            done: Some(done),
        }
    }
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        self.locks.release(self.group_id, &self.mutex);
    }
}

impl Publication<'_> {
    /// Waits until every earlier publication of the group has finished
    /// (or was dropped after a failure).
    pub async fn turn(&mut self) {
        if let Some(previous) = self.previous.take() {
            // Sent or dropped: either way the earlier one is over.
            let _ = previous.await;
        }
    }
}

impl Drop for Publication<'_> {
    fn drop(&mut self) {
        drop(self.done.take());
        self.locks.release(self.group_id, &self.mutex);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_writer_per_group_and_idle_locks_are_dropped() {
        let locks = GroupLocks::default();
        let g = GroupId([1; 16]);
        let first = locks.lock(g).await;
        let other_group = locks.lock(GroupId([2; 16])).await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), locks.lock(g))
                .await
                .is_err(),
            "a second writer of the same group waits"
        );
        drop(other_group);
        assert_eq!(locks.len(), 1);
        drop(first);
        assert!(locks.is_empty());
        let _again = locks.lock(g).await;
    }

    #[tokio::test]
    async fn publications_run_in_write_order_after_the_lock_is_released() {
        let locks = GroupLocks::default();
        let g = GroupId([1; 16]);
        let mut writer = locks.lock(g).await;
        let mut first = writer.publication();
        drop(writer);
        let mut writer = locks.lock(g).await;
        let mut second = writer.publication();
        drop(writer);
        assert_eq!(locks.len(), 1, "running publications keep the entry");
        first.turn().await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), second.turn())
                .await
                .is_err(),
            "the second waits for the first"
        );
        drop(first);
        second.turn().await;
        drop(second);
        assert!(locks.is_empty(), "the entry goes with the last publication");

        // A write whose publication is still running is not overtaken by a
        // writer that finds no entry for the group.
        let mut writer = locks.lock(g).await;
        let pending = writer.publication();
        drop(writer);
        let mut writer = locks.lock(g).await;
        let mut next = writer.publication();
        drop(writer);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(50), next.turn())
                .await
                .is_err()
        );
        drop(pending);
        next.turn().await;
    }
}
