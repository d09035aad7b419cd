//! Live delivery to connected devices.
//!
//! The [`Registry`] maps each connected, authenticated device to a bounded
//! channel read by its connection. Items are written to the store and
//! flushed first; then they are offered here in the group's publication
//! order ([`crate::group_lock`]), so a device sees a group's items in order. A connection registers
//! before it reads its backlog from the store and skips live items it already
//! sent from the backlog, so nothing falls in between.
//!
//! Offering never waits: if a device's channel is full (a slow reader), its
//! registration is dropped, its connection sees the channel close and ends,
//! and the device gets everything from its queue when it reconnects. A newer
//! connection of the same device replaces the older one the same way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use cascade_protocol::encode_server_frame;
use cascade_protocol::frames::{Bytes, ItemKind, Push, QueueItem, ServerFrame};
use cascade_protocol::{DeviceId, GroupId};
use tokio::sync::mpsc;

/// How many live frames may wait for one connection before it is dropped.
pub const LIVE_CHANNEL_CAPACITY: usize = 4096;

/// An item sequenced once and delivered to many devices: every recipient
/// gets the same frame (the queue id is the item's log position), encoded
/// once.
#[derive(Debug)]
pub struct SharedItem {
    /// Its queue id.
    pub queue_id: u64,
    /// The group.
    pub group_id: GroupId,
    /// Its sequence number in the group.
    pub seq: u64,
    /// The sending device.
    pub sender: DeviceId,
    /// What the payload is.
    pub kind: ItemKind,
    /// The MLS message.
    pub payload: Bytes,
    /// Addressed to some devices only ([`QueueItem::addressed`]).
    pub addressed: bool,
    /// The `Deliver` frame, encoded by the first connection that sends it.
    pub frame: OnceLock<axum::body::Bytes>,
}

impl SharedItem {
    /// The queue item.
    pub fn queue_item(&self) -> QueueItem {
        QueueItem {
            queue_id: self.queue_id,
            group_id: self.group_id,
            seq: self.seq,
            sender: self.sender,
            kind: self.kind,
            payload: self.payload.clone(),
            addressed: self.addressed,
        }
    }

    /// The encoded `Push(Deliver(..))` frame.
    pub fn frame(&self) -> axum::body::Bytes {
        self.frame
            .get_or_init(|| {
                encode_server_frame(&ServerFrame::Push(Push::Deliver(self.queue_item()))).into()
            })
            .clone()
    }
}

/// A frame for one connected device.
#[derive(Debug, Clone)]
pub enum Live {
    /// A queue item.
    Deliver(Arc<SharedItem>),
    /// The device's single-use KeyPackage stock is low.
    KeyPackagesLow {
        /// Single-use KeyPackages left.
        stock: u32,
    },
    /// The device's organisation CA issued its certificate.
    CertificateIssued {
        /// The certificate, DER.
        certificate: Bytes,
    },
    /// An organisation published a new revocation list.
    RevocationsUpdated {
        /// The organisation.
        org_id: cascade_protocol::OrgId,
    },
    /// The device's organisation published a new trust list.
    TrustListUpdated {
        /// The organisation.
        org_id: cascade_protocol::OrgId,
    },
    /// Another member's typing indicator: the `Push::Typing` frame,
    /// encoded once for every recipient.
    Typing(axum::body::Bytes),
}

impl Live {
    /// The push frame to send.
    pub fn into_push(self) -> Push {
        match self {
            Live::Deliver(item) => Push::Deliver(item.queue_item()),
            Live::KeyPackagesLow { stock } => Push::KeyPackagesLow { stock },
            Live::CertificateIssued { certificate } => Push::CertificateIssued { certificate },
            Live::TrustListUpdated { org_id } => Push::TrustListUpdated { org_id },
            Live::RevocationsUpdated { org_id } => Push::RevocationsUpdated { org_id },
            Live::Typing(frame) => match cascade_protocol::decode_server_frame(&frame) {
                Ok(ServerFrame::Push(push)) => push,
                _ => unreachable!("a typing frame is a push the relay encoded"),
            },
        }
    }
}

struct Entry {
    conn_id: u64,
    tx: mpsc::Sender<Live>,
}

/// The connected devices.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<DeviceId, Entry>>,
    next_conn_id: AtomicU64,
}

/// A connection's registration: the receiving end of its live channel.
pub struct Registration {
    /// Identifies this connection among the device's connections.
    pub conn_id: u64,
    /// Live frames; closes when the registration is replaced or dropped.
    pub rx: mpsc::Receiver<Live>,
}

impl Registry {
    /// Registers a connection of `device_id`, replacing (and so closing) any
    /// earlier connection of the device.
    pub fn register(&self, device_id: DeviceId) -> Registration {
        let (tx, rx) = mpsc::channel(LIVE_CHANNEL_CAPACITY);
        let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let old = self
            .conns
            .lock()
            .expect("registry poisoned")
            .insert(device_id, Entry { conn_id, tx });
        if old.is_some() {
            tracing::info!(device = %device_id, "a newer connection replaces the device's connection");
        }
        Registration { conn_id, rx }
    }

    /// Removes a connection's registration, unless a newer connection has
    /// replaced it.
    pub fn unregister(&self, device_id: &DeviceId, conn_id: u64) {
        let mut conns = self.conns.lock().expect("registry poisoned");
        if conns.get(device_id).is_some_and(|e| e.conn_id == conn_id) {
            conns.remove(device_id);
        }
    }

    /// Drops the device's registration, which closes its live connection
    /// (used when the device is revoked).
    pub fn disconnect(&self, device_id: &DeviceId) {
        self.conns
            .lock()
            .expect("registry poisoned")
            .remove(device_id);
    }

    /// The devices with a live connection.
    pub fn connected(&self) -> Vec<DeviceId> {
        self.conns
            .lock()
            .expect("registry poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// Whether the device has a live connection.
    pub fn is_connected(&self, device_id: &DeviceId) -> bool {
        self.conns
            .lock()
            .expect("registry poisoned")
            .contains_key(device_id)
    }

    /// Offers a frame that may be lost (a typing indicator) to connected
    /// devices: one whose channel is full does not get it, and keeps its
    /// connection.
    pub fn offer_lossy(&self, devices: &[DeviceId], live: &Live) {
        let conns = self.conns.lock().expect("registry poisoned");
        for device_id in devices {
            if let Some(entry) = conns.get(device_id) {
                let _ = entry.tx.try_send(live.clone());
            }
        }
    }

    /// Offers frames to connected devices without waiting. A device whose
    /// channel is full or closed loses its registration (it catches up from
    /// its queue on reconnect).
    pub fn offer<I: IntoIterator<Item = (DeviceId, Live)>>(&self, frames: I) {
        let mut conns = self.conns.lock().expect("registry poisoned");
        for (device_id, live) in frames {
            let Some(entry) = conns.get(&device_id) else {
                continue;
            };
            if let Err(e) = entry.tx.try_send(live) {
                if matches!(e, mpsc::error::TrySendError::Full(_)) {
                    tracing::warn!(device = %device_id, "device reads too slowly; dropping its connection");
                }
                conns.remove(&device_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn low(stock: u32) -> Live {
        Live::KeyPackagesLow { stock }
    }

    #[tokio::test]
    async fn a_newer_connection_replaces_the_older() {
        let registry = Registry::default();
        let d = DeviceId([1; 16]);
        let mut first = registry.register(d);
        let mut second = registry.register(d);
        assert!(first.rx.recv().await.is_none(), "the older channel closes");
        registry.offer([(d, low(1))]);
        assert!(matches!(
            second.rx.recv().await,
            Some(Live::KeyPackagesLow { stock: 1 })
        ));
        registry.unregister(&d, first.conn_id);
        assert!(registry.is_connected(&d), "a stale unregister is ignored");
        registry.unregister(&d, second.conn_id);
        assert!(!registry.is_connected(&d));
    }

    #[tokio::test]
    async fn a_lossy_frame_to_a_full_channel_is_dropped_not_the_reader() {
        let registry = Registry::default();
        let d = DeviceId([1; 16]);
        let mut reg = registry.register(d);
        registry.offer((0..LIVE_CHANNEL_CAPACITY as u32).map(|i| (d, low(i))));
        registry.offer_lossy(&[d, DeviceId([2; 16])], &Live::Typing(vec![1].into()));
        assert!(registry.is_connected(&d));
        let mut n = 0;
        while let Ok(live) = reg.rx.try_recv() {
            assert!(matches!(live, Live::KeyPackagesLow { .. }));
            n += 1;
        }
        assert_eq!(n, LIVE_CHANNEL_CAPACITY);
    }

    #[tokio::test]
    async fn a_slow_reader_is_dropped_not_waited_for() {
        let registry = Registry::default();
        let d = DeviceId([1; 16]);
        let mut reg = registry.register(d);
        registry.offer((0..=LIVE_CHANNEL_CAPACITY as u32).map(|i| (d, low(i))));
        assert!(!registry.is_connected(&d));
        let mut n = 0;
        while reg.rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, LIVE_CHANNEL_CAPACITY);
    }
}
