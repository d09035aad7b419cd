//! The app lock: after the organisation's idle period without input
//! ([`crate::identity::DevicePolicy`]) the client locks, and while it is
//! locked every call that would show content (conversations, messages,
//! members, the directory) fails with [`CoreError::Locked`], so no front
//! end can show content by mistake. The client keeps running underneath:
//! messages still arrive, are stored and acknowledged, and alerts are still
//! raised (without content), because a locked screen must not mean a
//! missed alert.
//!
//! Unlocking takes the key the device's data was opened with, given again:
//! the passphrase, or the platform keystore's key (which the keystore hands
//! out only to the logged-in user). The key itself is not kept here, only
//! its SHA-256, to compare with.

use crate::error::{CoreError, Result};

/// The lock's state, shared by every clone of a [`crate::Client`].
#[derive(Debug)]
pub(crate) struct AppLock {
    state: std::sync::Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// SHA-256 of the store's raw key (the one it was opened with, or the
    /// one it was changed to).
    key_digest: [u8; 32],
    locked: bool,
    /// When the person last used the app, milliseconds since the epoch.
    last_input_ms: u64,
    /// How long without input before it locks.
    idle_ms: u64,
}

/// What [`AppLock::tick`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    /// Nothing changed.
    Unchanged,
    /// The idle period passed: now locked.
    Locked,
}

impl AppLock {
    /// Unlocked, with input just now; `key_digest` is the SHA-256 of the
    /// raw key the store was opened with.
    pub fn new(key_digest: [u8; 32], idle_secs: u32, now_ms: u64) -> Self {
        AppLock {
            state: std::sync::Mutex::new(State {
                key_digest,
                locked: false,
                last_input_ms: now_ms,
                idle_ms: u64::from(idle_secs) * 1000,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The person used the app (a key, a click, a touch). Input while
    /// locked does not unlock.
    pub fn input(&self, now_ms: u64) {
        let mut s = self.state();
        if !s.locked {
            s.last_input_ms = s.last_input_ms.max(now_ms);
        }
    }

    /// The organisation changed the idle period.
    pub fn set_idle_secs(&self, idle_secs: u32) {
        self.state().idle_ms = u64::from(idle_secs) * 1000;
    }

    /// Locks if the idle period has passed since the last input.
    pub fn tick(&self, now_ms: u64) -> Tick {
        let mut s = self.state();
        if !s.locked && now_ms.saturating_sub(s.last_input_ms) >= s.idle_ms {
            s.locked = true;
            Tick::Locked
        } else {
            Tick::Unchanged
        }
    }

    /// Locks now (the person asked to); `false` if it was locked already.
    pub fn lock(&self) -> bool {
        !std::mem::replace(&mut self.state().locked, true)
    }

    /// Unlocks if `digest` is that of the key the data was opened with; a
    /// wrong key is [`CoreError::WrongKey`] and it stays locked.
    /// `Ok(false)` if it was not locked.
    pub fn unlock(&self, digest: [u8; 32], now_ms: u64) -> Result<bool> {
        let mut s = self.state();
        if !constant_time_eq(&digest, &s.key_digest) {
            return Err(CoreError::WrongKey);
        }
        s.last_input_ms = now_ms;
        Ok(std::mem::replace(&mut s.locked, false))
    }

    /// Whether `digest` is that of the store's key.
    pub fn is_key(&self, digest: &[u8; 32]) -> bool {
        constant_time_eq(digest, &self.state().key_digest)
    }

    /// The store's key was changed: unlocking takes the new one.
    pub fn set_key_digest(&self, digest: [u8; 32]) {
        self.state().key_digest = digest;
    }

    /// Whether it is locked.
    pub fn is_locked(&self) -> bool {
        self.state().locked
    }

    /// `Err(Locked)` while locked: the guard on every call that shows
    /// content.
    pub fn check(&self) -> Result<()> {
        if self.is_locked() {
            Err(CoreError::Locked)
        } else {
            Ok(())
        }
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    #[test]
    fn it_locks_after_the_idle_period_without_input() {
        let lock = AppLock::new(KEY, 60, 1_000);
        assert_eq!(lock.tick(60_999), Tick::Unchanged);
        lock.input(30_000);
        assert_eq!(lock.tick(61_000), Tick::Unchanged, "input put it off");
        assert!(lock.check().is_ok());
        assert_eq!(lock.tick(90_000), Tick::Locked);
        assert_eq!(lock.tick(200_000), Tick::Unchanged, "locked once");
        assert!(matches!(lock.check(), Err(CoreError::Locked)));
        // Input while locked does not unlock, nor count as use.
        lock.input(300_000);
        assert!(lock.is_locked());
    }

    #[test]
    fn only_the_right_key_unlocks() {
        let lock = AppLock::new(KEY, 60, 0);
        assert!(lock.lock());
        assert!(!lock.lock());
        assert!(matches!(lock.unlock([8; 32], 10), Err(CoreError::WrongKey)));
        assert!(lock.is_locked());
        assert_eq!(lock.unlock(KEY, 100_000).ok(), Some(true));
        assert!(!lock.is_locked());
        // The idle period counts from the unlock.
        assert_eq!(lock.tick(159_999), Tick::Unchanged);
        assert_eq!(lock.tick(160_000), Tick::Locked);
    }

    #[test]
    fn a_new_idle_period_applies_at_once() {
        let lock = AppLock::new(KEY, 3600, 0);
        assert_eq!(lock.tick(120_000), Tick::Unchanged);
        lock.set_idle_secs(60);
        assert_eq!(lock.tick(120_000), Tick::Locked);
    }
}
