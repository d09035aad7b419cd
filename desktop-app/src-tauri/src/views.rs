//! What the UI sees: cascade-core's types converted to JSON-friendly views
//! (ids as hex strings, camelCase fields). Conversion only; no decisions.

use cascade_core::engine::{mentions, Event, Participant};
use cascade_core::store::{Conversation, Identity, Message, Person};
use cascade_core::SearchHit;
use serde::{Deserialize, Serialize};

/// This device's identity as the enrolment screen and the header show it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityView {
    pub user_id: String,
    pub org_id: String,
    pub device_id: String,
    pub display_name: String,
    pub role: String,
    pub server_url: String,
    /// SHA-256 fingerprint of the organisation's CA (the anchor checked at
    /// enrolment against the code the admin gave).
    pub org_fingerprint: String,
}

impl From<&Identity> for IdentityView {
    fn from(i: &Identity) -> Self {
        IdentityView {
            user_id: i.user_id.to_string(),
            org_id: i.org_id.to_string(),
            device_id: i.device_id.to_string(),
            display_name: i.display_name.clone(),
            role: i.role.clone(),
            server_url: i.server_url.clone(),
            org_fingerprint: cascade_core::identity::fingerprint_hex(&i.anchor),
        }
    }
}

/// The app's state as a whole: enrolled or not, online or not.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub identity: Option<IdentityView>,
    /// The app is locked: show only the lock screen.
    pub locked: bool,
    pub connection: &'static str,
    pub certificate_pending: bool,
    /// The relay address to suggest on the enrolment screen.
    pub suggested_relay: String,
    /// What the window asks for before the device's data opens: nothing
    /// (the OS keystore has its key), its passphrase, or a new passphrase
    /// at enrolment.
    pub ask: crate::unlock::Ask,
}

/// One row of the conversation list.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    pub id: String,
    pub name: String,
    pub state: String,
    pub unread: u64,
    pub last_activity: u64,
    pub last_message: Option<String>,
    /// Organisations of the current members, sorted.
    pub orgs: Vec<String>,
    /// How many people (not devices) are members.
    pub member_count: usize,
    /// Muted on this device: no notifications.
    pub muted: bool,
}

impl From<Conversation> for ConversationView {
    fn from(c: Conversation) -> Self {
        ConversationView {
            id: c.group_id.to_string(),
            name: c.name,
            state: c.state.as_str().to_owned(),
            unread: c.unread,
            last_activity: c.last_activity,
            last_message: c.last_message,
            orgs: c.orgs.iter().map(ToString::to_string).collect(),
            member_count: c.people as usize,
            muted: c.muted,
        }
    }
}

/// One message in the chat view.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    pub id: String,
    pub group_id: String,
    pub sender: String,
    pub sender_device: String,
    pub mine: bool,
    pub sent_at: u64,
    pub seq: Option<u64>,
    pub text: Option<String>,
    pub kind: String,
    pub state: &'static str,
    /// The message it answers, as that is now.
    pub reply_to: Option<QuoteView>,
    /// When its sender last edited it, if ever.
    pub edited_at: Option<u64>,
    /// Who deleted it for everyone (the text is gone).
    pub deleted_by: Option<String>,
    /// Reactions by emoji, in the order first seen.
    pub reactions: Vec<ReactionView>,
    /// When it disappears (ms since the Unix epoch), if it will.
    pub expires_at: Option<u64>,
    /// How many others have read it (this user's messages).
    pub read_by: u32,
    /// The text cut at its mentions (each shown with the certified name).
    pub segments: Vec<SegmentView>,
    /// It mentions this user.
    pub mentions_me: bool,
    /// The text as typed again (mentions as `@user id`): where an edit
    /// starts.
    pub typed_text: Option<String>,
}

/// A stretch of a message's text: plain, or a mention.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentView {
    pub text: String,
    /// The person mentioned.
    pub mention: Option<String>,
    /// The person mentioned is this user.
    pub me: bool,
}

/// The message a reply answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuoteView {
    pub id: String,
    /// `None`: this device does not have it.
    pub sender: Option<String>,
    pub text: Option<String>,
    pub deleted: bool,
}

/// Everyone who reacted with one emoji.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReactionView {
    pub emoji: String,
    pub users: Vec<String>,
    /// This user is among them (the chip toggles it).
    pub mine: bool,
}

/// One person and when (ms since the Unix epoch).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptView {
    pub user_id: String,
    pub at: u64,
}

/// Who has received and read one of this user's messages.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptsView {
    pub recipients: u32,
    pub delivered: Vec<ReceiptView>,
    pub read: Vec<ReceiptView>,
    /// Delivery is tracked person by person (smaller conversations).
    pub per_person_delivery: bool,
}

impl From<cascade_core::MessageReceipts> for ReceiptsView {
    fn from(r: cascade_core::MessageReceipts) -> Self {
        let list = |v: Vec<(cascade_core::UserId, u64)>| {
            v.into_iter()
                .map(|(u, at)| ReceiptView {
                    user_id: u.to_string(),
                    at,
                })
                .collect()
        };
        ReceiptsView {
            recipients: r.recipients,
            delivered: list(r.delivered),
            read: list(r.read),
            per_person_delivery: r.per_person_delivery,
        }
    }
}

/// An earlier version of an edited message.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionView {
    pub text: String,
    pub at: u64,
}

impl MessageView {
    /// `own_device` decides `mine`: a message from this user's other
    /// device is shown as theirs-and-mine alike, on the right.
    pub fn new(m: Message, own_user: &str) -> Self {
        MessageView {
            id: m.id.to_string(),
            group_id: m.group_id.to_string(),
            mine: m.sender.as_str() == own_user,
            sender: m.sender.to_string(),
            sender_device: m.sender_device.to_string(),
            sent_at: m.sent_at,
            seq: m.seq,
            kind: m.kind,
            state: m.state.as_str(),
            reply_to: m.reply_to.map(|q| QuoteView {
                id: q.id.to_string(),
                sender: q.sender.map(|u| u.to_string()),
                text: q.text,
                deleted: q.deleted,
            }),
            edited_at: m.edited_at,
            deleted_by: m.deleted_by.map(|u| u.to_string()),
            reactions: m
                .reactions
                .into_iter()
                .map(|r| ReactionView {
                    mine: r.users.iter().any(|u| u.as_str() == own_user),
                    emoji: r.emoji,
                    users: r.users.iter().map(ToString::to_string).collect(),
                })
                .collect(),
            expires_at: m.expires_at,
            read_by: m.read_by,
            segments: m
                .text
                .as_deref()
                .map(|t| mentions::segments(t, &m.mentions))
                .unwrap_or_default()
                .into_iter()
                .map(|s| SegmentView {
                    me: s.mention.as_ref().is_some_and(|u| u.as_str() == own_user),
                    mention: s.mention.map(|u| u.to_string()),
                    text: s.text,
                })
                .collect(),
            mentions_me: m.mentions.iter().any(|x| x.user_id.as_str() == own_user),
            typed_text: m
                .text
                .as_deref()
                .map(|t| mentions::as_typed(t, &m.mentions)),
            text: m.text,
        }
    }
}

/// One search result, its matches in UTF-16 code units (as the window's
/// strings count).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchHitView {
    pub message: MessageView,
    pub conversation: String,
    /// `[start, end)` pairs into `message.text`.
    pub matches: Vec<(usize, usize)>,
}

impl SearchHitView {
    pub fn new(h: SearchHit, own_user: &str) -> Self {
        let text = h.message.text.clone().unwrap_or_default();
        let utf16 = |byte: usize| {
            text.get(..byte)
                .map_or(0, |prefix| prefix.encode_utf16().count())
        };
        SearchHitView {
            matches: h
                .matches
                .iter()
                .map(|&(a, b)| (utf16(a), utf16(b)))
                .collect(),
            message: MessageView::new(h.message, own_user),
            conversation: h.conversation,
        }
    }
}

/// A person in a conversation: their verified identity and devices.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    pub user_id: String,
    pub display_name: String,
    pub role: String,
    pub org_id: String,
    /// `admin` or `member`; none in a conversation from before roles.
    pub conversation_role: Option<&'static str>,
    pub is_self: bool,
    pub devices: Vec<String>,
    /// The soonest expiry among their devices' certificates, Unix seconds.
    pub certificate_expires: i64,
}

impl From<Participant> for MemberView {
    fn from(p: Participant) -> Self {
        MemberView {
            user_id: p.user_id.to_string(),
            display_name: p.display_name,
            role: p.role,
            org_id: p.org_id.to_string(),
            conversation_role: p.conversation_role.map(|r| r.as_str()),
            is_self: p.is_me,
            certificate_expires: p
                .devices
                .iter()
                .map(|d| d.certificate_expires)
                .min()
                .unwrap_or(0),
            devices: p.devices.iter().map(|d| d.device_id.to_string()).collect(),
        }
    }
}

/// A directory search result.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PersonView {
    pub user_id: String,
    pub org_id: String,
    pub display_name: String,
    pub role: String,
    pub devices: u32,
}

impl From<Person> for PersonView {
    fn from(p: Person) -> Self {
        PersonView {
            user_id: p.user_id.to_string(),
            org_id: p.org_id.to_string(),
            display_name: p.display_name,
            role: p.role,
            devices: p.devices,
        }
    }
}

/// This user's devices.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicesView {
    pub this_device: String,
    /// Every current device of the user as the relay lists them, or
    /// `None` when the relay could not be asked (offline).
    pub all: Option<Vec<String>>,
    /// The device's data is protected by a passphrase (not the OS
    /// keystore): the dialog offers to change it.
    pub passphrase: bool,
}

/// Preferences of this desktop installation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Show an OS notification for new messages while the window is not
    /// focused.
    pub notifications: bool,
    /// Put the sender and text in the notification; when false it only
    /// says there is a new message (for shared screens and lock screens).
    pub notification_content: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            notifications: true,
            notification_content: false,
        }
    }
}

/// An event pushed to the UI as the Tauri event `cascade`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum UiEvent {
    /// The connection changed.
    #[serde(rename_all = "camelCase")]
    Connection { state: &'static str },
    /// A new message (received, or sent from this or another own device).
    Message { message: MessageView },
    /// A message was edited, deleted or reacted to: replace it.
    Changed {
        message: MessageView,
        change: &'static str,
    },
    /// Messages reached their disappearing time: take them out.
    #[serde(rename_all = "camelCase")]
    Expired {
        group_id: String,
        message_ids: Vec<String>,
    },
    /// A message's delivery state changed.
    #[serde(rename_all = "camelCase")]
    Delivery {
        group_id: String,
        message_id: String,
        state: &'static str,
    },
    /// A conversation appeared or changed (name, unread, state).
    #[serde(rename_all = "camelCase")]
    Conversation { group_id: String },
    /// This user read a conversation on another device.
    #[serde(rename_all = "camelCase")]
    ReadElsewhere { group_id: String },
    /// Someone read a conversation up to `up_to` (a `seq`): this user's
    /// messages at or before it gain a reader.
    #[serde(rename_all = "camelCase")]
    ReadBy {
        group_id: String,
        user_id: String,
        up_to: u64,
    },
    /// Someone is typing until `until` (ms since the Unix epoch); 0: they
    /// stopped.
    #[serde(rename_all = "camelCase")]
    Typing {
        group_id: String,
        user_id: String,
        until: u64,
    },
    /// Members joined or left.
    #[serde(rename_all = "camelCase")]
    Membership {
        group_id: String,
        added: Vec<String>,
        removed: Vec<String>,
    },
    /// The device's certificate is pending or arrived.
    Certificate { pending: bool },
    /// The set of trusted partner organisations changed.
    Trust { partners: Vec<String> },
    /// The app locked: hide everything but the lock screen.
    Locked,
    /// The app was unlocked: load everything again.
    Unlocked,
    /// The organisation's device policy changed: lock after this long
    /// without input.
    #[serde(rename_all = "camelCase")]
    Policy { idle_lock_secs: u32 },
    /// Events were missed: the UI should load its state afresh.
    Reload,
    /// A queued operation failed.
    #[serde(rename_all = "camelCase")]
    Failed {
        group_id: Option<String>,
        reason: String,
    },
}

impl UiEvent {
    /// Whether the event says anything about conversations (held back from
    /// the window while the app is locked).
    pub fn shows_content(&self) -> bool {
        matches!(
            self,
            UiEvent::Message { .. }
                | UiEvent::Changed { .. }
                | UiEvent::Expired { .. }
                | UiEvent::Delivery { .. }
                | UiEvent::Conversation { .. }
                | UiEvent::ReadElsewhere { .. }
                | UiEvent::ReadBy { .. }
                | UiEvent::Typing { .. }
                | UiEvent::Membership { .. }
                | UiEvent::Trust { .. }
                | UiEvent::Failed { .. }
        )
    }

    /// The UI's view of a core event; `None` for answers to requests that
    /// the commands consume themselves.
    pub fn from_core(e: Event, own_user: &str) -> Option<UiEvent> {
        Some(match e {
            Event::Connection(c) => UiEvent::Connection { state: c.as_str() },
            Event::Synced => return None,
            Event::ConversationUpdated(g) => UiEvent::Conversation {
                group_id: g.to_string(),
            },
            Event::Message(m) => UiEvent::Message {
                message: MessageView::new(m, own_user),
            },
            Event::MessageChanged { message, change } => UiEvent::Changed {
                message: MessageView::new(message, own_user),
                change: change.as_str(),
            },
            Event::ReadElsewhere { group_id } => UiEvent::ReadElsewhere {
                group_id: group_id.to_string(),
            },
            Event::ReadBy {
                group_id,
                user_id,
                up_to,
            } => UiEvent::ReadBy {
                group_id: group_id.to_string(),
                user_id: user_id.to_string(),
                up_to,
            },
            // Sending and saving files is not in the desktop app yet.
            Event::Transfer { .. } => return None,
            Event::Typing {
                group_id,
                user_id,
                until,
            } => UiEvent::Typing {
                group_id: group_id.to_string(),
                user_id: user_id.to_string(),
                until,
            },
            Event::MessagesExpired { group_id, ids } => UiEvent::Expired {
                group_id: group_id.to_string(),
                message_ids: ids.iter().map(ToString::to_string).collect(),
            },
            Event::DeliveryState {
                group_id,
                message_id,
                state,
            } => UiEvent::Delivery {
                group_id: group_id.to_string(),
                message_id: message_id.to_string(),
                state: state.as_str(),
            },
            Event::MembershipChanged {
                group_id,
                added,
                removed,
            } => UiEvent::Membership {
                group_id: group_id.to_string(),
                added: added.iter().map(ToString::to_string).collect(),
                removed: removed.iter().map(ToString::to_string).collect(),
            },
            Event::AuthenticationRefused => UiEvent::Failed {
                group_id: None,
                reason: "the relay refused this device".into(),
            },
            Event::Erased => UiEvent::Failed {
                group_id: None,
                reason: "this device was revoked by its organisation; its data on this device \
                         has been erased"
                    .into(),
            },
            Event::CertificatePending => UiEvent::Certificate { pending: true },
            Event::CertificateReceived => UiEvent::Certificate { pending: false },
            Event::Locked => UiEvent::Locked,
            Event::Unlocked => UiEvent::Unlocked,
            Event::PolicyUpdated(policy) => UiEvent::Policy {
                idle_lock_secs: policy.idle_lock_secs,
            },
            Event::TrustUpdated { partners } => UiEvent::Trust {
                partners: partners.iter().map(ToString::to_string).collect(),
            },
            Event::OperationFailed { group_id, reason } => UiEvent::Failed {
                group_id: group_id.map(|g| g.to_string()),
                reason,
            },
        })
    }
}
