//! Group commit for durable flushes.
//!
//! Every accepted write is flushed before it is acknowledged. Callers that
//! arrive while a flush runs share the next one instead of each paying for an
//! fsync: a caller takes a ticket after its write; a flush covers every ticket
//! issued before it started.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::store::{Store, StoreError};

/// Batches [`Store::flush`] calls across concurrent writers.
pub struct Flusher {
    store: Arc<dyn Store>,
    /// Benchmarks only: answer without flushing (see
    /// [`Flusher::skip_for_benchmarks`]).
    skip: AtomicBool,
    tickets: AtomicU64,
    /// The highest ticket known to be durable; held while a flush runs.
    flushed: tokio::sync::Mutex<u64>,
    /// How many flushes ran.
    count: AtomicU64,
    /// How long each took.
    seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Flusher {
    /// A flusher for `store` that records each flush's duration in
    /// `seconds`.
    pub fn new(
        store: Arc<dyn Store>,
        seconds: prometheus_client::metrics::histogram::Histogram,
    ) -> Self {
        Self {
            seconds,
            store,
            skip: AtomicBool::new(false),
            tickets: AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// How many store flushes have run (each an fsync).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// From now on [`Flusher::flush`] returns at once: answers no longer
    /// wait for durability, and a crash loses what was acknowledged. Only
    /// for measuring what durability costs (`cascade-load`'s
    /// `relay-nofsync` target); never in service.
    pub fn skip_for_benchmarks(&self) {
        self.skip.store(true, Ordering::Relaxed);
    }

    /// Returns once every write this task completed before the call is
    /// durable. Holds no lock other writers need while it waits.
    pub async fn flush(&self) -> Result<(), StoreError> {
        if self.skip.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.flush_now().await
    }

    /// Like [`Flusher::flush`], even when flushes are skipped (shutdown).
    pub async fn flush_now(&self) -> Result<(), StoreError> {
        let ticket = self.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= ticket {
            return Ok(());
        }
        let covers = self.tickets.load(Ordering::SeqCst);
        let store = Arc::clone(&self.store);
        let started = std::time::Instant::now();
        tokio::task::spawn_blocking(move || store.flush())
            .await
            .map_err(|_| StoreError::Backend("the flush task failed".into()))??;
        self.seconds.observe(started.elapsed().as_secs_f64());
        self.count.fetch_add(1, Ordering::Relaxed);
        *flushed = covers;
        Ok(())
    }
}
