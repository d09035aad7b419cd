// The shapes the Rust shell sends (desktop-app/src-tauri/src/views.rs).

export type Connection = "offline" | "connecting" | "online";
export type DeliveryState = "sending" | "sent" | "delivered" | "failed" | "received";

export interface Identity {
  userId: string;
  orgId: string;
  deviceId: string;
  displayName: string;
  role: string;
  serverUrl: string;
  orgFingerprint: string;
}

/** What the window asks for before the device's data opens. */
export type Ask = "nothing" | "passphrase" | "newPassphrase" | "newPassphraseForData" | "keystore";

export interface Status {
  identity: Identity | null;
  /** The app locked (idle, or the person locked it): only the lock screen. */
  locked: boolean;
  connection: Connection;
  certificatePending: boolean;
  suggestedRelay: string;
  ask: Ask;
}

export interface Conversation {
  id: string;
  name: string;
  state: string;
  unread: number;
  lastActivity: number;
  lastMessage: string | null;
  orgs: string[];
  memberCount: number;
  /** Muted on this device: no notifications. */
  muted: boolean;
}

export interface Message {
  id: string;
  groupId: string;
  sender: string;
  senderDevice: string;
  mine: boolean;
  sentAt: number;
  seq: number | null;
  text: string | null;
  kind: string;
  state: DeliveryState;
  /** The message it answers, as that is now. */
  replyTo: Quote | null;
  /** When its sender last edited it, if ever. */
  editedAt: number | null;
  /** Who deleted it for everyone (the text is gone). */
  deletedBy: string | null;
  /** Reactions by emoji, in the order first seen. */
  reactions: Reaction[];
  /** When it disappears (ms since the Unix epoch); null: it stays. */
  expiresAt: number | null;
  /** How many others have read it (this user's messages). */
  readBy: number;
  /** The text cut at its mentions (each with the certified name). */
  segments: Segment[];
  /** It mentions this user. */
  mentionsMe: boolean;
  /** The text as typed again (mentions as `@user id`): where an edit starts. */
  typedText: string | null;
}

/** A stretch of a message's text: plain, or a mention. */
export interface Segment {
  text: string;
  /** The person mentioned. */
  mention: string | null;
  /** The person mentioned is this user. */
  me: boolean;
}

/** One person and when (ms since the Unix epoch). */
export interface Receipt {
  userId: string;
  at: number;
}

/** Who has received and read one of this user's messages. */
export interface Receipts {
  recipients: number;
  delivered: Receipt[];
  read: Receipt[];
  /** Delivery is tracked person by person (smaller conversations). */
  perPersonDelivery: boolean;
}

export interface Quote {
  id: string;
  /** null: this device does not have it. */
  sender: string | null;
  text: string | null;
  deleted: boolean;
}

export interface Reaction {
  emoji: string;
  users: string[];
  /** This user is among them. */
  mine: boolean;
}

export interface SearchHit {
  message: Message;
  /** Its conversation's name. */
  conversation: string;
  /** Where the text matched: `[start, end)` in UTF-16 units. */
  matches: [number, number][];
}

export interface Version {
  text: string;
  at: number;
}

export interface Member {
  userId: string;
  displayName: string;
  role: string;
  orgId: string;
  /** In this conversation; null in one created before conversation roles. */
  conversationRole: ConversationRole | null;
  isSelf: boolean;
  devices: string[];
  certificateExpires: number;
}

export type ConversationRole = "admin" | "member";

export type PolicyAction = "add" | "remove" | "rename" | "roles" | "timer";

/** A conversation's admins and policy, and what this user may do. */
export interface RoomDetails {
  /** Messages sent now disappear this many seconds after; null: never. */
  disappearAfter: number | null;
  admins: string[];
  policy: { action: PolicyAction; needs: ConversationRole }[];
  myRole: ConversationRole;
  may: PolicyAction[];
}

export interface Person {
  userId: string;
  orgId: string;
  displayName: string;
  role: string;
  devices: number;
}

export interface Devices {
  thisDevice: string;
  all: string[] | null;
  /** The device's data is protected by a passphrase (not the OS keystore). */
  passphrase: boolean;
}

export interface Settings {
  notifications: boolean;
  notificationContent: boolean;
}

export interface UiError {
  code: string;
  message: string;
}

export type CascadeEvent =
  | { type: "connection"; state: Connection }
  | { type: "message"; message: Message }
  | { type: "changed"; message: Message; change: "edited" | "deleted" | "reactions" }
  | { type: "delivery"; groupId: string; messageId: string; state: DeliveryState }
  | { type: "expired"; groupId: string; messageIds: string[] }
  | { type: "conversation"; groupId: string }
  | { type: "readElsewhere"; groupId: string }
  | { type: "readBy"; groupId: string; userId: string; upTo: number }
  | { type: "typing"; groupId: string; userId: string; until: number }
  | { type: "membership"; groupId: string; added: string[]; removed: string[] }
  | { type: "certificate"; pending: boolean }
  | { type: "trust"; partners: string[] }
  | { type: "locked" }
  | { type: "unlocked" }
  | { type: "policy"; idleLockSecs: number }
  | { type: "reload" }
  | { type: "failed"; groupId: string | null; reason: string };

/** What can be done to a message from its bubble (App carries them out). */
export interface MessageActions {
  reply: (m: Message) => void;
  edit: (m: Message) => void;
  remove: (m: Message) => Promise<void>;
  toggleReaction: (m: Message, emoji: string) => Promise<void>;
  versions: (m: Message) => Promise<Version[]>;
  receipts: (m: Message) => Promise<Receipts | null>;
  jump: (id: string) => void;
}
