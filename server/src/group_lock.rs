//! One writer per group: the relay is each group's sequencer.
//!
//! A commit or message holds its group's lock across check, store write,
//! durable flush and live fan-out, so epochs advance one commit at a time and
//! every device sees a group's items in sequence order. Different groups
//! proceed in parallel. Locks of idle groups are dropped from the map.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cascade_protocol::GroupId;
use tokio::sync::OwnedMutexGuard;

type GroupMutex = Arc<tokio::sync::Mutex<()>>;

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
    guard: Option<OwnedMutexGuard<()>>,
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

    /// How many groups currently have a lock entry (for tests).
    pub fn len(&self) -> usize {
        self.locks.lock().expect("group lock map poisoned").len()
    }

    /// Whether no group has a lock entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for GroupGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.locks.lock().expect("group lock map poisoned");
        // The map and this guard hold the only references: nobody waits, and
        // nobody can start waiting while we hold the map's lock.
        if Arc::strong_count(&self.mutex) == 2 {
            locks.remove(&self.group_id);
        }
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
}
