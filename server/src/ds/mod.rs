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

use cascade_protocol::frames::{Bytes, ItemKind, Request, Response};
use cascade_protocol::limits::{KEY_PACKAGE_LOW_WATER, MAX_MLS_MESSAGE_BYTES};
use cascade_protocol::mls_header::{wire_format, WireFormat};
use cascade_protocol::{DeviceId, GroupId, UserId};

use crate::error::DsError;
use crate::fanout::{Live, SharedItem};
use crate::group_lock::{GroupGuard, Publication};
use crate::store::Sequenced;
use crate::AppState;

pub mod ack;
pub mod authenticate;
pub mod commit;
pub mod create_group;
pub mod directory;
pub mod group_info;
pub mod keypackages;
pub mod send;
pub mod trust_list;

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
/// order all the same), acknowledgements and pings. Anything else reads
/// state, which must not show a write that is not yet durable, so the
/// connection answers what is in flight first.
pub fn may_overtake(request: &Request) -> bool {
    matches!(
        request,
        Request::SendMessage { .. } | Request::Commit(_) | Request::Ack { .. } | Request::Ping
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
        Request::SendMessage { group_id, message } => {
            send::start(state, session, group_id, message).await
        }
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

/// The `QueueFull` answer for a group at its lag limit, naming the devices
/// that hold it there (so members can remove them; hazard H-017).
pub(crate) fn queue_full(store: &dyn crate::store::Store, group: &GroupId) -> DsError {
    match store.lagging_devices(group, cascade_protocol::limits::MAX_QUEUE_LEN) {
        Ok(devices) => DsError::QueueFull { devices },
        Err(e) => DsError::Store(e),
    }
}
