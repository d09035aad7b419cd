//! Push notifications for offline devices.
//!
//! When an item is queued for a device that is not connected and has
//! registered a push token, the relay POSTs
//! [`PushNotification`](cascade_protocol::http::PushNotification) — the
//! token and nothing else: no content, no sender, no group — to the push
//! gateway its operator configured (the gateway turns it into an APNs or FCM
//! wake-up; the app then connects and syncs). Notifications are coalesced:
//! at most one per device per
//! [`PUSH_COALESCE_SECS`](cascade_protocol::limits::PUSH_COALESCE_SECS).
//! Delivery is best effort and never delays or fails the request that
//! queued the item.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cascade_protocol::http::PushNotification;
use cascade_protocol::limits::PUSH_COALESCE_SECS;
use cascade_protocol::DeviceId;
use tokio::sync::mpsc;

use crate::store::Store;

/// Sends push notifications from a background task.
#[derive(Clone)]
pub struct PushNotifier {
    tx: mpsc::UnboundedSender<DeviceId>,
}

impl PushNotifier {
    /// Starts the notifier for the gateway at `gateway` (an `http(s)://`
    /// URL).
    pub fn start(gateway: String, store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(gateway, store, rx));
        Self { tx }
    }

    /// Notes that an offline device has new items.
    pub fn notify(&self, device: DeviceId) {
        let _ = self.tx.send(device);
    }
}

async fn run(gateway: String, store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<DeviceId>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client builds");
    let mut last: HashMap<DeviceId, Instant> = HashMap::new();
    let window = Duration::from_secs(PUSH_COALESCE_SECS);
    while let Some(device) = rx.recv().await {
        if last.get(&device).is_some_and(|t| t.elapsed() < window) {
            continue;
        }
        let token = match store.get_device(&device) {
            Ok(Some(d)) if !d.revoked => d.push_token,
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "push: could not read the device");
                None
            }
        };
        let Some(token) = token else { continue };
        last.insert(device, Instant::now());
        match http
            .post(&gateway)
            .json(&PushNotification { token })
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                tracing::debug!(device = %device, "push notification sent");
            }
            Ok(r) => tracing::warn!(status = %r.status(), "push gateway refused a notification"),
            Err(e) => tracing::warn!(error = %e.without_url(), "push gateway unreachable"),
        }
    }
}
