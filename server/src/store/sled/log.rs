//! Group logs with a cursor per member device: how the sled backend queues.
//!
//! Every accepted commit, Welcome and application message of a group is
//! written **once**, into the group's log at a relay-wide *position* (sled's
//! id generator: increasing, never reused, also across restarts). A position
//! is the item's queue id on the wire, so a device's queue — the items of all
//! its groups addressed to it, in position order — reads exactly as the
//! per-device queues it replaced did.
//!
//! Each (group, device) pair that can still receive something has a
//! [`Membership`]: the spans of `seq` during which the device was in the
//! roster, and a cursor (`next`: the lowest position not yet acknowledged).
//! Whether an entry is addressed to a device follows from the entry and the
//! spans alone ([`addressed_to`]), the rules the per-recipient copies used to
//! encode: an application message goes to every member but its sender, a
//! commit to the members before it and its committer, a Welcome to the
//! devices it names.
//!
//! So a send writes one entry (and an 8-byte index from position to group)
//! whatever the group's size, and an acknowledgement moves the cursors of the
//! groups it names without a transaction. Entries every cursor has passed are
//! deleted by [`collect`], which the writer runs every [`COLLECT_EVERY`]
//! sequence numbers and whenever a write would hit the lag limit. The limit is
//! per group: the store refuses a write with `QueueFull` when the slowest
//! member device would lag more than [`MAX_QUEUE_LEN`] items behind (a
//! commit [`COMMIT_HEADROOM`] more), and the delivery service then stops the
//! group's delivery to the devices that far behind (`Store::stop_delivery`)
//! and writes again. A stopped device's membership keeps its notice
//! ([`Stop`]) and holds nothing back: the log is collected past it.
//!
//! Items queued by the per-device layout of earlier versions (the `queue` and
//! `payloads` trees) are served before the log, by [`legacy_page`], until
//! acknowledged; their ids are all lower than any log position.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use ::sled::transaction::{ConflictableTransactionError, TransactionalTree};
use ::sled::{IVec, Transactional};
use cascade_protocol::frames::{Bytes, ItemKind, QueueItem};
use cascade_protocol::limits::MAX_QUEUE_LEN;
use cascade_protocol::{DeviceId, GroupId};
use serde::{Deserialize, Serialize};

use super::{
    counter, decode, decode_tx, device_index_key, encode, payload_key, SledStore, TxResult,
};
use super::{PayloadRecord, QueueEntry};
use crate::store::StoreError;

/// How many sequence numbers a group takes between two runs of [`collect`].
pub(super) const COLLECT_EVERY: u64 = 256;

/// How far past [`MAX_QUEUE_LEN`] a commit may still take a group, so that
/// members can remove a device that stopped reading (or leave).
pub(super) const COMMIT_HEADROOM: u64 = 1_000;

/// `meta` key of the layout version; absent before the group logs.
pub(super) const LAYOUT_KEY: &[u8] = b"layout";
/// The layout with group logs.
pub(super) const LAYOUT_GROUP_LOGS: u64 = 2;

/// One entry of a group's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct LogEntry {
    pub seq: u64,
    pub sender: DeviceId,
    pub kind: ItemKind,
    pub payload: Bytes,
    /// For a Welcome: the devices it is for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub welcomed: Vec<DeviceId>,
    /// For an application message addressed to some users: their member
    /// devices when it was written (`None`: every member but the sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<DeviceId>>,
}

/// A stretch of a group's `seq` during which a device was in its roster:
/// added by the commit at `from` (0 for the creator), removed by the commit
/// at `until` (which it still receives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Span {
    pub from: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<u64>,
}

impl Span {
    fn holds(&self, seq: u64) -> bool {
        self.from < seq && self.until.is_none_or(|u| seq <= u)
    }
}

/// What a device still has to read of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Membership {
    /// The lowest log position not yet acknowledged (or passed over as not
    /// addressed to this device).
    pub next: u64,
    /// The `seq` of the last entry acknowledged or passed over.
    pub acked_seq: u64,
    /// When it was in the roster, oldest first; only the last may be open.
    pub spans: Vec<Span>,
    /// The group's delivery to it is stopped (`Store::stop_delivery`): the
    /// notice it still has to read, kept here so that it outlives the
    /// log's collection (which a stopped device no longer holds back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
}

/// The notice of a stopped delivery, as the stopped device reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Stop {
    /// Its log position (its queue id).
    pub pos: u64,
    /// Its `seq`.
    pub seq: u64,
    /// Its payload (a CBOR `Notice`).
    pub payload: Bytes,
    /// The Welcome that brought the device in, if it had not read it: it
    /// comes first, so that the device learns of the group (and rejoins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub welcome: Option<KeptWelcome>,
}

/// A Welcome kept with a stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct KeptWelcome {
    /// Its log position (its queue id).
    pub pos: u64,
    /// Its `seq`.
    pub seq: u64,
    /// Who committed it.
    pub sender: DeviceId,
    /// The Welcome.
    pub payload: Bytes,
}

impl Membership {
    /// A device that joins at `seq`, by the commit at position `commit_pos`.
    pub fn joining(seq: u64, commit_pos: u64) -> Self {
        Self {
            next: commit_pos,
            acked_seq: seq.saturating_sub(1),
            spans: vec![Span {
                from: seq,
                until: None,
            }],
            stop: None,
        }
    }

    fn is_open(&self) -> bool {
        self.spans.last().is_some_and(|s| s.until.is_none())
    }

    /// The last `seq` it may receive, if it left.
    fn last_until(&self) -> Option<u64> {
        self.spans.last().and_then(|s| s.until)
    }

    /// Starts a span at `seq` unless one is open (ending a stop: the
    /// device is delivered to again).
    pub fn join(&mut self, seq: u64) {
        self.stop = None;
        if !self.is_open() {
            self.spans.push(Span {
                from: seq,
                until: None,
            });
        }
    }

    /// Ends the open span at `seq`.
    pub fn leave(&mut self, seq: u64) {
        if let Some(span) = self.spans.last_mut() {
            if span.until.is_none() {
                span.until = Some(seq);
            }
        }
    }
}

/// Whether `entry` is for `device`, a member during `spans`.
pub(super) fn addressed_to(entry: &LogEntry, device: &DeviceId, spans: &[Span]) -> bool {
    match (entry.kind, &entry.to) {
        (ItemKind::Welcome, _) => entry.welcomed.contains(device),
        (ItemKind::Application, Some(to)) if !to.contains(device) => false,
        (kind, _) => header_addressed_to(entry.seq, kind, &entry.sender, device, spans),
    }
}

/// [`addressed_to`] for a commit or application message, from its header.
fn header_addressed_to(
    seq: u64,
    kind: ItemKind,
    sender: &DeviceId,
    device: &DeviceId,
    spans: &[Span],
) -> bool {
    let member = || spans.iter().any(|s| s.holds(seq));
    match kind {
        ItemKind::Application => sender != device && member(),
        ItemKind::Commit => sender == device || member(),
        ItemKind::Notice => member(),
        ItemKind::Welcome => false,
    }
}

/// The `log_pos` value: what an acknowledgement needs of the entry at a
/// position (its group, `seq`, kind and sender, and whether it is
/// addressed to some devices only: then the entry itself says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub group: GroupId,
    pub seq: u64,
    pub kind: ItemKind,
    pub sender: DeviceId,
    pub targeted: bool,
}

/// The kind octet of a [`Header`] for an application message addressed to
/// some devices only.
const TARGETED_TAG: u8 = 5;

impl Header {
    pub fn to_bytes(self) -> [u8; 41] {
        let mut out = [0; 41];
        out[..16].copy_from_slice(self.group.as_bytes());
        out[16..24].copy_from_slice(&self.seq.to_be_bytes());
        out[24] = match self.targeted {
            true => TARGETED_TAG,
            false => super::kind_tag(self.kind),
        };
        out[25..].copy_from_slice(self.sender.as_bytes());
        out
    }

    fn from_bytes(raw: &[u8]) -> Result<Self, StoreError> {
        let corrupt = || StoreError::Corrupt("log position".into());
        if raw.len() != 41 {
            return Err(corrupt());
        }
        let kind = match raw[24] {
            1 => ItemKind::Commit,
            2 => ItemKind::Application,
            3 => ItemKind::Welcome,
            4 => ItemKind::Notice,
            TARGETED_TAG => ItemKind::Application,
            _ => return Err(corrupt()),
        };
        Ok(Self {
            group: GroupId(raw[..16].try_into().map_err(|_| corrupt())?),
            seq: u64::from_be_bytes(raw[16..24].try_into().map_err(|_| corrupt())?),
            kind,
            sender: DeviceId(raw[25..].try_into().map_err(|_| corrupt())?),
            targeted: raw[24] == TARGETED_TAG,
        })
    }
}

/// What [`collect`] last found for a group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Collected {
    /// The lowest `acked_seq` of the roster's devices.
    pub floor_seq: u64,
    /// The group's next `seq` when it ran.
    pub at_seq: u64,
}

impl Collected {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.floor_seq.to_be_bytes());
        out[8..].copy_from_slice(&self.at_seq.to_be_bytes());
        out
    }

    pub fn from_bytes(raw: Option<&[u8]>) -> Result<Self, StoreError> {
        match raw {
            None => Ok(Self::default()),
            Some(raw) if raw.len() == 16 => Ok(Self {
                floor_seq: u64::from_be_bytes(raw[..8].try_into().expect("8 bytes")),
                at_seq: u64::from_be_bytes(raw[8..].try_into().expect("8 bytes")),
            }),
            Some(_) => Err(StoreError::Corrupt("group log counters".into())),
        }
    }

    /// Whether a write at `seq` must first run [`collect`]: it is due, or
    /// the write would be refused on what the last run found.
    pub fn due(&self, seq: u64, limit: u64) -> bool {
        seq.saturating_sub(self.at_seq) >= COLLECT_EVERY
            || seq.saturating_sub(self.floor_seq) > limit
    }
}

pub(super) fn log_key(group: &GroupId, pos: u64) -> [u8; 24] {
    let mut out = [0; 24];
    out[..16].copy_from_slice(group.as_bytes());
    out[16..].copy_from_slice(&pos.to_be_bytes());
    out
}

pub(super) fn member_key(group: &GroupId, device: &DeviceId) -> [u8; 32] {
    let mut out = [0; 32];
    out[..16].copy_from_slice(group.as_bytes());
    out[16..].copy_from_slice(device.as_bytes());
    out
}

pub(super) fn device_group_key(device: &DeviceId, group: &GroupId) -> [u8; 32] {
    let mut out = [0; 32];
    out[..16].copy_from_slice(device.as_bytes());
    out[16..].copy_from_slice(group.as_bytes());
    out
}

fn split_id(raw: &[u8], what: &str) -> Result<([u8; 16], u64), StoreError> {
    let id = raw
        .get(..16)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| StoreError::Corrupt(what.into()))?;
    let n = raw
        .get(16..24)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt(what.into()))?;
    Ok((id, n))
}

fn tail_id(raw: &[u8], what: &str) -> Result<[u8; 16], StoreError> {
    raw.get(16..32)
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| StoreError::Corrupt(what.into()))
}

/// Appends `entry` to `group`'s log inside a transaction; returns its
/// position.
pub(super) fn append_tx(
    log: &TransactionalTree,
    positions: &TransactionalTree,
    group: &GroupId,
    entry: &LogEntry,
) -> TxResult<u64> {
    let pos = log.generate_id()?;
    log.insert(&log_key(group, pos)[..], encode(entry))?;
    let header = Header {
        group: *group,
        seq: entry.seq,
        kind: entry.kind,
        sender: entry.sender,
        targeted: entry.to.is_some(),
    };
    positions.insert(&pos.to_be_bytes()[..], &header.to_bytes()[..])?;
    Ok(pos)
}

/// Reads a membership inside a transaction.
pub(super) fn membership_tx(
    members: &TransactionalTree,
    group: &GroupId,
    device: &DeviceId,
) -> TxResult<Option<Membership>> {
    members
        .get(&member_key(group, device)[..])?
        .map(|raw| decode_tx(&raw, "membership"))
        .transpose()
}

/// A group's last [`collect`] result, inside a transaction.
pub(super) fn collected_tx(collected: &TransactionalTree, group: &GroupId) -> TxResult<Collected> {
    let raw = collected.get(group.as_bytes())?;
    Collected::from_bytes(raw.as_deref()).map_err(ConflictableTransactionError::Abort)
}

/// One group's entries for one device, from a position on.
struct Stream {
    group: GroupId,
    spans: Vec<Span>,
    entries: ::sled::Iter,
    /// The log is read out (or past the device's last span).
    ended: bool,
    /// For a stopped device: its kept Welcome and its notice, which end
    /// the stream (in position order; the next one last).
    tail: Vec<(u64, LogEntry)>,
}

impl Stream {
    fn next_for(&mut self, device: &DeviceId) -> Result<Option<(u64, LogEntry)>, StoreError> {
        let last = self.spans.last().and_then(|s| s.until).unwrap_or(u64::MAX);
        let tail_pos = self.tail.first().map_or(u64::MAX, |(pos, _)| *pos);
        while !self.ended {
            let Some(kv) = self.entries.next() else {
                break;
            };
            let (key, raw) = kv?;
            let (_, pos) = split_id(&key, "log key")?;
            if pos >= tail_pos {
                break;
            }
            let entry: LogEntry = decode(&raw, "log entry")?;
            if entry.seq > last {
                break;
            }
            if addressed_to(&entry, device, &self.spans) {
                return Ok(Some((pos, entry)));
            }
        }
        self.ended = true;
        Ok(self.tail.pop())
    }
}

impl SledStore {
    fn membership(
        &self,
        group: &GroupId,
        device: &DeviceId,
    ) -> Result<Option<Membership>, StoreError> {
        self.members
            .get(member_key(group, device))?
            .map(|raw| decode(&raw, "membership"))
            .transpose()
    }

    /// The groups a device has a membership in (current or draining).
    pub(super) fn groups_of(&self, device: &DeviceId) -> Result<Vec<GroupId>, StoreError> {
        self.device_groups
            .scan_prefix(device.as_bytes())
            .keys()
            .map(|k| Ok(GroupId(tail_id(&k?, "device group key")?)))
            .collect()
    }

    /// `device`'s entries of each of its groups, from its cursor there or
    /// position `from`, whichever is later.
    fn streams(&self, device: &DeviceId, from: u64) -> Result<Vec<Stream>, StoreError> {
        let mut streams = Vec::new();
        for group in self.groups_of(device)? {
            let Some(m) = self.membership(&group, device)? else {
                continue;
            };
            let start = m.next.max(from);
            let mut tail = Vec::new();
            if let Some(stop) = m.stop {
                if stop.pos >= start {
                    let notice = LogEntry {
                        seq: stop.seq,
                        sender: *device,
                        kind: ItemKind::Notice,
                        payload: stop.payload,
                        welcomed: Vec::new(),
                        to: None,
                    };
                    tail.push((stop.pos, notice));
                }
                if let Some(w) = stop.welcome.filter(|w| w.pos >= from) {
                    let welcome = LogEntry {
                        seq: w.seq,
                        sender: w.sender,
                        kind: ItemKind::Welcome,
                        payload: w.payload,
                        welcomed: vec![*device],
                        to: None,
                    };
                    tail.push((w.pos, welcome));
                }
            }
            streams.push(Stream {
                group,
                spans: m.spans,
                entries: self
                    .log
                    .range(log_key(&group, start)..=log_key(&group, u64::MAX)),
                ended: false,
                tail,
            });
        }
        Ok(streams)
    }

    /// Up to `limit` items addressed to `device` at positions `from` and
    /// later, in position order.
    pub(super) fn log_page(
        &self,
        device: &DeviceId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<QueueItem>, StoreError> {
        let mut streams = Vec::new();
        let mut heads = BinaryHeap::new();
        for mut stream in self.streams(device, from)? {
            if let Some((pos, entry)) = stream.next_for(device)? {
                heads.push(Reverse((pos, streams.len())));
                streams.push((stream, Some(entry)));
            }
        }
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(Reverse((pos, i))) = heads.pop() else {
                break;
            };
            let (stream, pending) = &mut streams[i];
            let entry = pending
                .take()
                .expect("a stream in the heap holds its next entry");
            out.push(QueueItem {
                queue_id: pos,
                group_id: stream.group,
                seq: entry.seq,
                sender: entry.sender,
                kind: entry.kind,
                addressed: entry.to.is_some(),
                payload: entry.payload,
            });
            if let Some((pos, entry)) = stream.next_for(device)? {
                *pending = Some(entry);
                heads.push(Reverse((pos, i)));
            }
        }
        Ok(out)
    }

    /// How many log entries wait for `device`.
    pub(super) fn log_len(&self, device: &DeviceId) -> Result<u64, StoreError> {
        let mut n = 0;
        for mut stream in self.streams(device, 0)? {
            while stream.next_for(device)?.is_some() {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Moves a device's cursor in a group forward to `next` (never back);
    /// returns where it was, `None` without a membership. Without a
    /// transaction: only acknowledgements and [`collect`] move it, both
    /// forward.
    fn advance(
        &self,
        group: &GroupId,
        device: &DeviceId,
        next: u64,
        acked_seq: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut found = None;
        let mut corrupt = false;
        self.members
            .fetch_and_update(member_key(group, device), |old| {
                let old = old?;
                let Ok(mut m) = decode::<Membership>(old, "membership") else {
                    corrupt = true;
                    return Some(IVec::from(old));
                };
                found = Some(m.next);
                if next > m.next {
                    m.next = next;
                    m.acked_seq = m.acked_seq.max(acked_seq);
                }
                Some(IVec::from(encode(&m)))
            })?;
        if corrupt {
            return Err(StoreError::Corrupt("membership record".into()));
        }
        Ok(found)
    }

    /// Acknowledges items: the highest position of each group that was
    /// addressed to the device moves its cursor there (and so past every
    /// earlier item of that group); ids that were not the device's change
    /// nothing. Ids of the earlier per-device queues are removed from them.
    /// Returns how many ids were acknowledged now.
    pub(super) fn log_ack(&self, device: &DeviceId, ids: &[u64]) -> Result<u64, StoreError> {
        let mut by_group: BTreeMap<GroupId, Vec<(u64, Header)>> = BTreeMap::new();
        let mut legacy = Vec::new();
        // Ids that may be a stopped delivery's notice or kept Welcome.
        let mut stops = Vec::new();
        for id in ids {
            match self.log_pos.get(id.to_be_bytes())? {
                Some(raw) => {
                    let header = Header::from_bytes(&raw)?;
                    if matches!(header.kind, ItemKind::Welcome | ItemKind::Notice) {
                        stops.push(*id);
                    }
                    by_group
                        .entry(header.group)
                        .or_default()
                        .push((*id, header));
                }
                None => {
                    legacy.push(*id);
                    stops.push(*id);
                }
            }
        }
        let mut acked = 0;
        if !stops.is_empty() {
            let kept = self.ack_stops(device, &stops)?;
            legacy.retain(|id| !kept.contains(id));
            acked += kept.len() as u64;
        }
        for (group, items) in by_group {
            let Some(m) = self.membership(&group, device)? else {
                continue;
            };
            let mut mine = Vec::new();
            for (pos, h) in items {
                // Only the entry says which devices a Welcome or a
                // targeted message is for.
                let addressed = if h.kind == ItemKind::Welcome || h.targeted {
                    match self.log.get(log_key(&group, pos))? {
                        Some(raw) => {
                            addressed_to(&decode::<LogEntry>(&raw, "log entry")?, device, &m.spans)
                        }
                        None => false,
                    }
                } else {
                    header_addressed_to(h.seq, h.kind, &h.sender, device, &m.spans)
                };
                if addressed {
                    mine.push((pos, h.seq));
                }
            }
            let Some(&(last, seq)) = mine.iter().max() else {
                continue;
            };
            if let Some(was) = self.advance(&group, device, last + 1, seq)? {
                acked += mine.iter().filter(|(pos, _)| *pos >= was).count() as u64;
            }
        }
        if !legacy.is_empty() && !self.queue.is_empty() {
            acked += self.legacy_ack(device, &legacy)?;
        }
        Ok(acked)
    }

    /// Acknowledges what stopped deliveries keep among `ids` (their log
    /// entries may be collected already): a kept Welcome is dropped from
    /// its stop, a notice moves the cursor past it. Returns the ids that
    /// were such items, acknowledged now.
    fn ack_stops(&self, device: &DeviceId, ids: &[u64]) -> Result<Vec<u64>, StoreError> {
        let mut acked = Vec::new();
        for group in self.groups_of(device)? {
            let key = member_key(&group, device);
            let mut corrupt = false;
            let mut found = Vec::new();
            self.members.fetch_and_update(key, |old| {
                found.clear();
                let old = old?;
                let Ok(mut m) = decode::<Membership>(old, "membership") else {
                    corrupt = true;
                    return Some(IVec::from(old));
                };
                let Some(stop) = m.stop.as_mut() else {
                    return Some(IVec::from(old));
                };
                if let Some(w) = stop.welcome.take_if(|w| ids.contains(&w.pos)) {
                    found.push(w.pos);
                }
                if ids.contains(&stop.pos) && m.next <= stop.pos {
                    found.push(stop.pos);
                    m.next = stop.pos + 1;
                    m.acked_seq = m.acked_seq.max(stop.seq);
                }
                Some(IVec::from(encode(&m)))
            })?;
            if corrupt {
                return Err(StoreError::Corrupt("membership record".into()));
            }
            acked.extend_from_slice(&found);
        }
        Ok(acked)
    }

    /// The devices with an open membership at least `lag` seqs behind the
    /// group's head, past the entries that are not for them
    /// (`Store::lagging_devices`).
    pub(super) fn lagging(&self, group: &GroupId, lag: u64) -> Result<Vec<DeviceId>, StoreError> {
        let head_seq = counter(self.group_seq.get(group.as_bytes())?)?.saturating_sub(1);
        let mut behind = Vec::new();
        for kv in self.members.scan_prefix(group.as_bytes()) {
            let (key, raw) = kv?;
            let mut m: Membership = decode(&raw, "membership")?;
            if !m.is_open() || head_seq.saturating_sub(m.acked_seq) < lag {
                continue;
            }
            let device = DeviceId(tail_id(&key, "membership key")?);
            self.skip_unaddressed(group, &device, &mut m)?;
            if head_seq.saturating_sub(m.acked_seq) >= lag {
                behind.push(device);
            }
        }
        Ok(behind)
    }

    /// Moves cursors past entries not addressed to their device, forgets
    /// devices that left and read everything (or lag too far to matter),
    /// deletes the entries every cursor has passed, and records the roster's
    /// slowest cursor for the lag limit. Idempotent; concurrent
    /// acknowledgements only make what it finds conservative.
    pub(super) fn collect(&self, group: &GroupId) -> Result<Collected, StoreError> {
        let head_seq = counter(self.group_seq.get(group.as_bytes())?)?.saturating_sub(1);
        let mut floor_seq = head_seq;
        let mut trim_to = u64::MAX;
        for kv in self.members.scan_prefix(group.as_bytes()) {
            let (key, raw) = kv?;
            let device = DeviceId(tail_id(&key, "membership key")?);
            let mut m: Membership = decode(&raw, "membership")?;
            if let (Some(stop), false) = (&m.stop, m.is_open()) {
                // A stopped device holds nothing back; it is forgotten once
                // it has read its notice.
                if m.acked_seq >= stop.seq {
                    self.forget(group, &device, &raw)?;
                }
                continue;
            }
            let moved = self.skip_unaddressed(group, &device, &mut m)?;
            let open = m.is_open();
            let done = match m.last_until() {
                Some(until) if !open => {
                    m.acked_seq >= until || head_seq.saturating_sub(m.acked_seq) > MAX_QUEUE_LEN
                }
                _ => false,
            };
            if done && self.forget(group, &device, &raw)? {
                continue;
            }
            if moved {
                self.advance(group, &device, m.next, m.acked_seq)?;
            }
            if open {
                floor_seq = floor_seq.min(m.acked_seq);
            }
            trim_to = trim_to.min(m.next);
        }
        // Nothing below a cursor is read again. (Scanning from 0 costs one
        // seek: what was collected before is gone.)
        let start = log_key(group, 0);
        let end = log_key(group, trim_to);
        for key in self.log.range(start..end).keys() {
            let key = key?;
            let (_, pos) = split_id(&key, "log key")?;
            self.log.remove(&key)?;
            self.log_pos.remove(pos.to_be_bytes())?;
        }
        let found = Collected {
            floor_seq,
            at_seq: head_seq + 1,
        };
        self.log_gc
            .insert(group.as_bytes(), &found.to_bytes()[..])?;
        Ok(found)
    }

    /// The Welcome that brought `device` into the group this time, if it
    /// has not read it yet.
    pub(super) fn unread_welcome(
        &self,
        group: &GroupId,
        device: &DeviceId,
    ) -> Result<Option<KeptWelcome>, StoreError> {
        let Some(m) = self.membership(group, device)? else {
            return Ok(None);
        };
        let Some(span) = m.spans.last() else {
            return Ok(None);
        };
        for kv in self
            .log
            .range(log_key(group, m.next)..=log_key(group, u64::MAX))
        {
            let (key, raw) = kv?;
            let entry: LogEntry = decode(&raw, "log entry")?;
            if entry.seq > span.from {
                break;
            }
            if entry.kind == ItemKind::Welcome && entry.welcomed.contains(device) {
                let (_, pos) = split_id(&key, "log key")?;
                return Ok(Some(KeptWelcome {
                    pos,
                    seq: entry.seq,
                    sender: entry.sender,
                    payload: entry.payload,
                }));
            }
        }
        Ok(None)
    }

    /// Moves `m`'s cursor past the entries after it that are not for
    /// `device` (its own messages, Welcomes for others). Returns whether it
    /// moved.
    fn skip_unaddressed(
        &self,
        group: &GroupId,
        device: &DeviceId,
        m: &mut Membership,
    ) -> Result<bool, StoreError> {
        let mut moved = false;
        for kv in self
            .log
            .range(log_key(group, m.next)..=log_key(group, u64::MAX))
        {
            let (key, raw) = kv?;
            let entry: LogEntry = decode(&raw, "log entry")?;
            if addressed_to(&entry, device, &m.spans) {
                break;
            }
            let (_, pos) = split_id(&key, "log key")?;
            m.next = pos + 1;
            m.acked_seq = m.acked_seq.max(entry.seq);
            moved = true;
        }
        Ok(moved)
    }

    /// Deletes a finished membership unless it changed since it was read as
    /// `seen` (a commit added the device again).
    fn forget(&self, group: &GroupId, device: &DeviceId, seen: &IVec) -> Result<bool, StoreError> {
        let key = member_key(group, device);
        let forgotten = (&self.members, &self.device_groups).transaction(|(members, index)| {
            if members.get(&key[..])?.as_ref() != Some(seen) {
                return Ok(false);
            }
            members.remove(&key[..])?;
            index.remove(&device_group_key(device, group)[..])?;
            Ok::<_, ConflictableTransactionError<StoreError>>(true)
        })?;
        Ok(forgotten)
    }

    /// Items of the per-device queues of earlier versions, from id `from`.
    pub(super) fn legacy_page(
        &self,
        device: &DeviceId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<QueueItem>, StoreError> {
        if self.queue.is_empty() {
            return Ok(Vec::new());
        }
        let start = device_index_key(device, from);
        let end = device_index_key(device, u64::MAX);
        let mut out = Vec::new();
        for kv in self.queue.range(start..=end) {
            if out.len() >= limit {
                break;
            }
            let (key, value) = kv?;
            let (_, queue_id) = split_id(&key, "queue key")?;
            let entry: QueueEntry = decode(&value, "queue entry")?;
            let key = payload_key(&entry.group_id, entry.seq, entry.kind);
            // Missing only if the item was acked since the scan read it.
            let Some(raw) = self.payloads.get(key)? else {
                continue;
            };
            let payload: PayloadRecord = decode(&raw, "payload")?;
            out.push(QueueItem {
                queue_id,
                group_id: entry.group_id,
                seq: entry.seq,
                sender: entry.sender,
                kind: entry.kind,
                payload: payload.payload,
                addressed: false,
            });
        }
        Ok(out)
    }

    /// How many items of the earlier per-device queue wait for `device`.
    pub(super) fn legacy_len(&self, device: &DeviceId) -> Result<u64, StoreError> {
        counter(self.queue_len.get(device.as_bytes())?)
    }

    /// Removes ids from a device's queue of the earlier layout.
    fn legacy_ack(&self, device: &DeviceId, ids: &[u64]) -> Result<u64, StoreError> {
        let removed = (&self.queue, &self.queue_len, &self.payloads).transaction(
            |(queue, lens, payloads)| {
                let mut removed = 0u64;
                for id in ids {
                    let Some(raw) = queue.remove(&device_index_key(device, *id)[..])? else {
                        continue;
                    };
                    removed += 1;
                    let entry: QueueEntry = decode_tx(&raw, "queue entry")?;
                    let key = payload_key(&entry.group_id, entry.seq, entry.kind);
                    if let Some(raw) = payloads.get(key)? {
                        let mut record: PayloadRecord = decode_tx(&raw, "payload")?;
                        if record.refs <= 1 {
                            payloads.remove(&key[..])?;
                        } else {
                            record.refs -= 1;
                            payloads.insert(&key[..], encode(&record))?;
                        }
                    }
                }
                if removed > 0 {
                    let len = super::counter_tx(lens.get(device.as_bytes())?)?;
                    lens.insert(
                        &device.as_bytes()[..],
                        &len.saturating_sub(removed).to_be_bytes()[..],
                    )?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(removed)
            },
        )?;
        Ok(removed)
    }

    /// Brings a database of the per-device layout to the group logs: every
    /// roster device gets a membership that starts after what was already
    /// sequenced (its queued items stay in its old queue). Idempotent.
    pub(super) fn migrate_to_group_logs(&self) -> Result<(), StoreError> {
        if self.meta.get(LAYOUT_KEY)?.is_some() {
            return Ok(());
        }
        for kv in self.groups.iter() {
            let (key, raw) = kv?;
            let record: super::GroupRecord = decode(&raw, "group")?;
            let group = record.group_id;
            let head_seq = counter(self.group_seq.get(&key)?)?.saturating_sub(1);
            let next = self.db.generate_id()?;
            for device in &record.roster {
                let key = member_key(&group, device);
                if self.members.get(key)?.is_none() {
                    let m = Membership {
                        next,
                        acked_seq: head_seq,
                        spans: vec![Span {
                            from: 0,
                            until: None,
                        }],
                        stop: None,
                    };
                    self.members.insert(key, encode(&m))?;
                }
                self.device_groups
                    .insert(device_group_key(device, &group), &[][..])?;
            }
            let collected = Collected {
                floor_seq: head_seq,
                at_seq: head_seq + 1,
            };
            self.log_gc
                .insert(group.as_bytes(), &collected.to_bytes()[..])?;
        }
        self.meta
            .insert(LAYOUT_KEY, &LAYOUT_GROUP_LOGS.to_be_bytes()[..])?;
        self.db.flush()?;
        Ok(())
    }
}
