//! The delivery service: one module per relay operation on the WebSocket.
//!
//! [`start_request`] takes a decoded request of an authenticated connection
//! and answers it, or, for the operations that sequence a group (commit,
//! send), returns once the write is made and the group's lock released, with
//! the task that finishes it (durable flush, publication in the group's
//! order, answer). The connection loop in [`crate::ws`] owns the socket: it
//! reads the connection's next request meanwhile, so a device's pipelined
//! messages share flushes, and answers in request order. The sequencing task
//! runs on its own, so a dropped connection cannot interrupt the flush and
//! fan-out that follow a write.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use cascade_protocol::frames::{Bytes, ItemKind, Notice, Request, Response, StopReason};
use cascade_protocol::limits::{KEY_PACKAGE_LOW_WATER, MAX_MLS_MESSAGE_BYTES, MAX_QUEUE_LEN};
use cascade_protocol::mls_header::{wire_format, WireFormat};
use cascade_protocol::{DeviceId, GroupId, UserId};

use crate::error::DsError;
use crate::fanout::{Live, SharedItem};
use crate::group_lock::{GroupGuard, Publication};
use crate::store::Sequenced;
use crate::AppState;

pub mod ack;
pub mod authenticate;
pub mod blob;
pub mod commit;
pub mod create_group;
pub mod directory;
pub mod group_info;
pub mod keypackages;
pub mod link;
mod policy;
pub mod send;
pub mod trust_list;
pub mod typing;

/// Who is on the other end of an authenticated connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The authenticated device.
    pub device_id: DeviceId,
    /// Its user.
    pub user_id: UserId,
}

/// How a request of an authenticated connection is being handled.
pub enum Handling {
    /// It is answered.
    Answered(Result<Response, DsError>),
    /// Its write is made (or it failed before writing); the task answers
    /// once the write is durable and published.
    Sequenced(JoinHandle<Result<Response, DsError>>),
}

impl Handling {
    /// The answer, once there is one.
    pub async fn answer(self) -> Result<Response, DsError> {
        match self {
            Handling::Answered(result) => result,
            Handling::Sequenced(task) => task
                .await
                .map_err(|_| DsError::Internal("a sequencing task failed"))?,
        }
    }
}

/// Whether a request may be handled while the connection's earlier writes
/// are still on their way to disk: writes (they are sequenced in request
/// order all the same), acknowledgements, pings and typing indicators
/// (live only: one that overtakes a message is harmless). Anything else reads
/// state, which must not show a write that is not yet durable, so the
/// connection answers what is in flight first.
pub fn may_overtake(request: &Request) -> bool {
    matches!(
        request,
        Request::SendMessage { .. }
            | Request::Commit(_)
            | Request::Ack { .. }
            | Request::Ping
            | Request::Typing { .. }
    )
}

/// Starts one request of an authenticated connection (see [`Handling`]):
/// writes are sequenced, everything else is answered.
pub async fn start_request(state: &AppState, session: &Session, request: Request) -> Handling {
    use Handling::Answered;
    if state.has_store_failed() {
        // Its memory may be ahead of the disk: nothing more is served from
        // it while the relay stops.
        return Answered(Err(DsError::Unavailable {
            retry_after_ms: 1_000,
        }));
    }
    if stores_new(&request) {
        if let Err(e) = state.room_to_write() {
            return Answered(Err(e));
        }
    }
    match request {
        Request::Commit(bundle) => commit::start(state, session, bundle).await,
        Request::SendMessage {
            group_id,
            message,
            to,
        } => send::start(state, session, group_id, message, to).await,
        Request::Authenticate { .. } => Answered(Err(DsError::AlreadyAuthenticated)),
        Request::UploadKeyPackages {
            key_packages,
            last_resort,
        } => Answered(keypackages::handle_upload(state, session, key_packages, last_resort).await),
        Request::ClaimKeyPackages { user_id } => {
            Answered(keypackages::handle_claim(state, session, &user_id).await)
        }
        Request::CreateGroup {
            group_id,
            group_info,
        } => Answered(create_group::handle(state, session, group_id, group_info).await),
        Request::CloseGroup { group_id } => {
            Answered(create_group::close(state, session, group_id).await)
        }
        Request::Ack { queue_ids } => Answered(ack::handle(state, session, &queue_ids)),
        Request::GetGroupInfo { group_id } => {
            Answered(group_info::handle(state, session, &group_id))
        }
        Request::ListGroups => Answered(group_info::list(state, session)),
        Request::GetUser { user_id } => {
            Answered(directory::handle_get_user(state, session, &user_id))
        }
        Request::GetTrustList { org_id } => Answered(trust_list::handle(state, &org_id)),
        Request::GetRevocations { org_id } => Answered(trust_list::revocations(state, &org_id)),
        Request::SearchDirectory { orgs, query } => {
            Answered(directory::handle_search(state, session, &orgs, &query))
        }
        Request::RegisterPush { token } => Answered(register_push(state, session, token)),
        Request::Ping => Answered(Ok(Response::Pong)),
        Request::Typing {
            group_id,
            epoch,
            payload,
        } => Answered(typing::handle(state, session, group_id, epoch, payload)),
        Request::PostBlob {
            group_id,
            digest,
            size,
        } => Answered(blob::post(state, session, group_id, &digest, size)),
        Request::GetBlob { digest } => Answered(blob::get(state, session, &digest)),
        Request::DeleteBlob { digest } => Answered(blob::delete(state, session, &digest)),
        Request::PostOwnBlob { digest, size } => {
            Answered(blob::post_own(state, session, &digest, size))
        }
        Request::LinkPut {
            code,
            slot,
            payload,
        } => Answered(link::put(state, session, &code, slot, payload)),
        Request::LinkGet { code, slot } => Answered(link::get(state, session, &code, slot)),
    }
}

/// Whether the request stores something new, and so is refused while the
/// disk is under its reserve ([`crate::disk`]). Commits are not: they are
/// few (one per group and epoch), and removing a member must always work.
/// Acknowledgements and claims free space; the rest reads.
fn stores_new(request: &Request) -> bool {
    matches!(
        request,
        Request::SendMessage { .. }
            | Request::CreateGroup { .. }
            | Request::UploadKeyPackages { .. }
            | Request::RegisterPush { .. }
            | Request::PostBlob { .. }
            | Request::PostOwnBlob { .. }
    )
}

/// Stores (or clears) the device's push token.
fn register_push(
    state: &AppState,
    session: &Session,
    token: Option<String>,
) -> Result<Response, DsError> {
    if token
        .as_ref()
        .is_some_and(|t| t.len() > cascade_protocol::limits::MAX_PUSH_TOKEN_BYTES)
    {
        return Err(DsError::TooLarge {
            limit: cascade_protocol::limits::MAX_PUSH_TOKEN_BYTES as u64,
        });
    }
    state
        .store()
        .set_push_token(&session.device_id, token.as_deref())?;
    Ok(Response::PushRegistered)
}

/// `TooLarge` if an MLS message exceeds [`MAX_MLS_MESSAGE_BYTES`].
/// The user's unrevoked devices: those that stand for the user in a roster
/// (for another device of theirs to fetch a GroupInfo, list the groups or
/// join by external commit).
fn live_devices(state: &AppState, user: &UserId) -> Result<Vec<DeviceId>, DsError> {
    Ok(state
        .store()
        .devices_of_user(user)?
        .into_iter()
        .filter(|d| !d.revoked)
        .map(|d| d.device_id)
        .collect())
}

fn check_mls_size(message: &[u8]) -> Result<(), DsError> {
    if message.len() > MAX_MLS_MESSAGE_BYTES {
        return Err(DsError::TooLarge {
            limit: MAX_MLS_MESSAGE_BYTES as u64,
        });
    }
    Ok(())
}

/// `Malformed(reason)` unless `message` is an `MlsMessage` of `expected`
/// wire format.
fn expect_wire_format(
    message: &[u8],
    expected: WireFormat,
    reason: &'static str,
) -> Result<(), DsError> {
    match wire_format(message) {
        Ok(found) if found == expected => Ok(()),
        _ => Err(DsError::Malformed(reason)),
    }
}

/// Told by a sequencing operation once its write is made and the group's
/// lock released (dropped unsent if it ends before writing).
pub struct Written(oneshot::Sender<()>);

/// Runs a sequencing operation as its own task, so that it completes even if
/// the connection that asked for it goes away, and returns once it has
/// written (or ended).
async fn start_sequencing<F>(operation: impl FnOnce(Written) -> F) -> Handling
where
    F: Future<Output = Result<Response, DsError>> + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(operation(Written(tx)));
    // An error before the write drops the sender: nothing to wait for.
    let _ = rx.await;
    Handling::Sequenced(task)
}

/// After a sequencing write: lets the group's writer lock go (so writes of
/// the group made meanwhile share the next fsync), waits until the write is
/// durable and the group's earlier writes are published, and returns the
/// write's turn to publish; hold it across [`deliver_live`].
async fn durable_turn<'a>(
    state: &'a AppState,
    mut writer: GroupGuard<'a>,
    written: Written,
) -> Result<Publication<'a>, DsError> {
    let mut publication = writer.publication();
    drop(writer);
    let _ = written.0.send(());
    state.flush().await?;
    publication.turn().await;
    Ok(publication)
}

/// Offers freshly sequenced (and flushed) items to the connected recipients.
/// Call in the write's publication turn (see [`crate::group_lock`]), after
/// the flush.
fn deliver_live(
    state: &AppState,
    group_id: GroupId,
    sender: DeviceId,
    sequenced: &Sequenced,
    payloads: &[(ItemKind, &Bytes)],
) {
    // One shared item per (kind, queue id): every recipient of an item gets
    // the same frame.
    let mut items: Vec<Arc<SharedItem>> = Vec::new();
    let mut frames = Vec::with_capacity(sequenced.deliveries.len());
    for delivery in &sequenced.deliveries {
        let known = items
            .iter()
            .find(|i| i.kind == delivery.kind && i.queue_id == delivery.queue_id);
        let item = match known {
            Some(item) => Arc::clone(item),
            None => {
                let Some((_, payload)) = payloads.iter().find(|(k, _)| *k == delivery.kind) else {
                    continue;
                };
                let item = Arc::new(SharedItem {
                    queue_id: delivery.queue_id,
                    group_id,
                    seq: sequenced.seq,
                    sender,
                    kind: delivery.kind,
                    payload: (*payload).clone(),
                    addressed: sequenced.addressed,
                    frame: std::sync::OnceLock::new(),
                });
                items.push(Arc::clone(&item));
                item
            }
        };
        frames.push((delivery.device_id, Live::Deliver(item)));
    }
    state.notify_offline(sequenced.deliveries.iter().map(|d| d.device_id));
    state.registry().offer(frames);
}

/// Whether a device with `stock` single-use KeyPackages should be told to
/// upload more.
pub fn stock_is_low(stock: u32) -> bool {
    stock <= KEY_PACKAGE_LOW_WATER
}

/// The `QueueFull` answer for a group still at its lag limit after the
/// devices that held it there were stopped (which should not happen: a
/// refusal left for a client to retry, never a silent loss).
pub(crate) fn queue_full(store: &dyn crate::store::Store, group: &GroupId) -> DsError {
    match store.lagging_devices(group, cascade_protocol::limits::MAX_QUEUE_LEN) {
        Ok(devices) => DsError::QueueFull { devices },
        Err(e) => DsError::Store(e),
    }
}

/// A `Notice` item written to a group, to deliver live once flushed.
pub(crate) struct NoticeWritten {
    /// The device the notice is about (the item's sender).
    pub device: DeviceId,
    /// Where it went.
    pub sequenced: Sequenced,
    /// Its payload.
    pub payload: Bytes,
}

/// Stops delivering `group` to `device` for `reason` (protocol §12.5),
/// if it is still at least `behind` seqs behind (when given): the notice
/// written, or `None` if it was stopped already, is not a member, or read
/// meanwhile. Call under the group's writer lock.
pub(crate) fn stop_delivery(
    state: &AppState,
    group: &GroupId,
    device: &DeviceId,
    reason: StopReason,
    behind: Option<u64>,
) -> Result<Option<NoticeWritten>, DsError> {
    let payload = Bytes::from(Notice::DeliveryStopped { reason }.encode());
    let Some(sequenced) = state
        .store()
        .stop_delivery(group, device, &payload, behind)?
    else {
        return Ok(None);
    };
    let kind = match reason {
        StopReason::QueueFull { .. } => "queue_full",
        StopReason::Expired { .. } => "expired",
    };
    state
        .metrics()
        .delivery_stopped
        .get_or_create(&crate::metrics::Kind { kind })
        .inc();
    tracing::info!(%group, reason = kind, "delivery of a group to a device stopped");
    Ok(Some(NoticeWritten {
        device: *device,
        sequenced,
        payload,
    }))
}

/// Runs a group write; if the store refuses it with `QueueFull`, stops
/// delivering the group to the devices that hold it there (more than
/// [`MAX_QUEUE_LEN`] behind) and writes again, so that one device's backlog
/// never stops its group. If that stops the writer itself (it never read
/// what it was sent), its write is refused with `NotMember`, unless the
/// write is its resync (`resync`), which brings it back at once. Returns
/// the notices written (deliver them before the write's own items) and the
/// write's outcome. Call under the group's writer lock.
pub(crate) fn write_past_laggers<T>(
    state: &AppState,
    group: &GroupId,
    writer: &DeviceId,
    resync: bool,
    mut write: impl FnMut() -> Result<T, crate::store::StoreError>,
) -> (Vec<NoticeWritten>, Result<T, DsError>) {
    let mut notices = Vec::new();
    match write() {
        Err(crate::store::StoreError::QueueFull) => {}
        other => return (notices, other.map_err(DsError::from)),
    }
    let laggers = match state.store().lagging_devices(group, MAX_QUEUE_LEN) {
        Ok(laggers) => laggers,
        Err(e) => return (notices, Err(e.into())),
    };
    for device in &laggers {
        let reason = StopReason::QueueFull {
            limit: MAX_QUEUE_LEN,
        };
        match stop_delivery(state, group, device, reason, Some(MAX_QUEUE_LEN)) {
            Ok(Some(notice)) => notices.push(notice),
            Ok(None) => {}
            Err(e) => return (notices, Err(e)),
        }
    }
    if !resync && notices.iter().any(|n| n.device == *writer) {
        return (notices, Err(DsError::NotMember));
    }
    let outcome = match write() {
        Err(crate::store::StoreError::QueueFull) => Err(queue_full(&**state.store(), group)),
        other => other.map_err(DsError::from),
    };
    (notices, outcome)
}

/// Stops delivering every group to the devices that have not connected
/// since `expiry` ago (and are not connected now), with
/// [`StopReason::Expired`]: their queues go, and they rejoin when they come
/// back (protocol §12.2). Returns how many groups were stopped.
pub async fn expire_idle_devices(
    state: &AppState,
    expiry: std::time::Duration,
) -> Result<usize, DsError> {
    let now = crate::unix_now();
    let before = now.saturating_sub(expiry.as_secs());
    // While the relay was down (or before it recorded when devices were
    // last seen) nobody could connect: idle time counts from its start.
    if state.started_at() > before {
        return Ok(0);
    }
    let store = Arc::clone(state.store());
    let idle = tokio::task::spawn_blocking(move || store.idle_devices(before))
        .await
        .map_err(|_| DsError::Internal("the queue expiry scan failed"))??;
    let mut stopped = 0;
    for (device, _) in idle {
        for group in state.store().groups_with_devices(&[device])? {
            match expire_in_group(state, &group, &device, before, now).await {
                Ok(true) => stopped += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(%group, error = %e, "expiring a queue failed"),
            }
        }
    }
    Ok(stopped)
}

/// Stops `group`'s delivery to `device` if it is still idle since before
/// `before` (checked under the group's lock: it may have connected since
/// the scan). Returns whether it stopped it.
async fn expire_in_group(
    state: &AppState,
    group: &GroupId,
    device: &DeviceId,
    before: u64,
    now: u64,
) -> Result<bool, DsError> {
    let store = state.store();
    if store
        .get_group(group)?
        .is_none_or(|g| g.stopped.contains(device))
    {
        return Ok(false);
    }
    let mut writer = state.groups().lock(*group).await;
    if state.registry().is_connected(device) {
        return Ok(false);
    }
    let Some(record) = store.get_device(device)? else {
        return Ok(false);
    };
    let seen = if record.last_seen == 0 {
        record.enrolled_at
    } else {
        record.last_seen
    };
    if seen >= before {
        return Ok(false);
    }
    let reason = StopReason::Expired {
        idle_secs: now.saturating_sub(seen.max(state.started_at())),
    };
    let Some(notice) = stop_delivery(state, group, device, reason, None)? else {
        return Ok(false);
    };
    let mut publication = writer.publication();
    drop(writer);
    state.flush().await?;
    publication.turn().await;
    deliver_notices(state, *group, &[notice]);
    Ok(true)
}

/// Offers written notices to the connected devices; call in the write's
/// publication turn, after the flush, before the write's own items.
pub(crate) fn deliver_notices(state: &AppState, group: GroupId, notices: &[NoticeWritten]) {
    for n in notices {
        deliver_live(
            state,
            group,
            n.device,
            &n.sequenced,
            &[(ItemKind::Notice, &n.payload)],
        );
    }
}
