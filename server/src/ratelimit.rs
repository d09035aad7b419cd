//! Counting attempts per key in fixed windows: how the relay limits
//! KeyPackage claims and failed enrolments (`docs/threat-model.md`).
//!
//! A key may make `max` attempts per `window`; the next is refused with the
//! time until the window ends. The table holds at most `capacity` keys:
//! when it is full, windows that ended are dropped, and if none has, a new
//! key is refused (so an attacker with many keys cannot grow the relay's
//! memory, only be refused).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// A fixed-window counter per key.
pub struct Limiter<K> {
    max: u32,
    window: Duration,
    capacity: usize,
    windows: Mutex<HashMap<K, (u32, Instant)>>,
}

impl<K: Eq + Hash + Clone> Limiter<K> {
    /// `max` attempts per `window` for each of at most `capacity` keys.
    pub fn new(max: u32, window: Duration, capacity: usize) -> Self {
        Self {
            max,
            window,
            capacity,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt by `key`: `Ok` if it is within the limit, else how
    /// long until the key may try again.
    pub fn attempt(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        self.make_room(&mut windows, key, now)?;
        let (count, since) = windows.entry(key.clone()).or_insert((0, now));
        if now.duration_since(*since) >= self.window {
            *count = 0;
            *since = now;
        }
        if *count >= self.max {
            return Err(self.window.saturating_sub(now.duration_since(*since)));
        }
        *count += 1;
        Ok(())
    }

    /// Makes sure the table has room for `key`: drops windows that ended
    /// when it is full; `Err` if that made none.
    fn make_room(
        &self,
        windows: &mut HashMap<K, (u32, Instant)>,
        key: &K,
        now: Instant,
    ) -> Result<(), Duration> {
        if !windows.contains_key(key) && windows.len() >= self.capacity {
            windows.retain(|_, (_, since)| now.duration_since(*since) < self.window);
            if windows.len() >= self.capacity {
                return Err(self.window);
            }
        }
        Ok(())
    }

    /// Whether `key` may try now, without counting an attempt: `Err` with
    /// the wait while it has used up its window.
    /// A key the table has no room for may not try.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        self.make_room(&mut windows, key, now)?;
        match windows.get(key) {
            Some((count, since))
                if *count >= self.max && now.duration_since(*since) < self.window =>
            {
                Err(self.window.saturating_sub(now.duration_since(*since)))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_key_is_refused_past_its_limit_until_the_window_ends() {
        let limiter = Limiter::new(2, Duration::from_secs(60), 10);
        assert!(limiter.attempt(&"a").is_ok());
        assert!(limiter.attempt(&"a").is_ok());
        let wait = limiter.attempt(&"a").expect_err("over the limit");
        assert_eq!(wait, Duration::from_secs(60));
        assert!(limiter.check(&"a").is_err(), "checking does not count");
        assert!(limiter.attempt(&"b").is_ok(), "other keys are not affected");
        assert!(limiter.check(&"b").is_ok());
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.attempt(&"a").is_ok(), "a new window");
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_refuses_new_keys_until_windows_end() {
        let limiter = Limiter::new(5, Duration::from_secs(60), 2);
        assert!(limiter.attempt(&1).is_ok());
        assert!(limiter.attempt(&2).is_ok());
        assert!(limiter.check(&3).is_err(), "no room");
        assert!(limiter.attempt(&3).is_err(), "no room");
        assert!(limiter.attempt(&1).is_ok(), "known keys go on");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(limiter.attempt(&3).is_ok(), "expired windows make room");
    }
}
