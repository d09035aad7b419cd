// The only bridge to the app: Tauri commands and the `cascade` event.
// The UI never talks to the relay itself.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  CascadeEvent,
  Conversation,
  ConversationRole,
  Devices,
  Member,
  Message,
  Person,
  PolicyAction,
  Receipts,
  RoomDetails,
  SearchHit,
  Settings,
  Status,
  UiError,
  Version,
} from "./types";

/** The text to show for a failed command, whatever shape it failed in. */
export function errorText(e: unknown): string {
  if (typeof e === "object" && e !== null && "message" in e) {
    return String((e as UiError).message);
  }
  return String(e);
}

export const api = {
  status: () => invoke<Status>("status"),
  enrol: (
    relayUrl: string,
    code: string,
    deviceName: string,
    serverCa: string | null,
    passphrase: string | null,
  ) => invoke<Status>("enrol", { relayUrl, code, deviceName, serverCa, passphrase }),
  unlock: (passphrase: string) => invoke<Status>("unlock", { passphrase }),
  lockNow: () => invoke<Status>("lock_now"),
  input: () => invoke<void>("input"),
  conversations: () => invoke<Conversation[]>("conversations"),
  history: (groupId: string, before: string | null, limit: number) =>
    invoke<Message[]>("history", { groupId, before, limit }),
  send: (groupId: string, text: string, replyTo: string | null = null) =>
    invoke<string>("send_message", { groupId, text, replyTo }),
  edit: (groupId: string, messageId: string, text: string) =>
    invoke<void>("edit_message", { groupId, messageId, text }),
  deleteMessage: (groupId: string, messageId: string) =>
    invoke<void>("delete_message", { groupId, messageId }),
  react: (groupId: string, messageId: string, emoji: string) =>
    invoke<void>("react", { groupId, messageId, emoji }),
  unreact: (groupId: string, messageId: string, emoji: string) =>
    invoke<void>("unreact", { groupId, messageId, emoji }),
  versions: (groupId: string, messageId: string) =>
    invoke<Version[]>("message_versions", { groupId, messageId }),
  receipts: (groupId: string, messageId: string) =>
    invoke<Receipts>("message_receipts", { groupId, messageId }),
  readReceipts: () => invoke<boolean>("read_receipts"),
  setReadReceipts: (on: boolean) => invoke<boolean>("set_read_receipts", { on }),
  searchMessages: (text: string, groupId: string | null, limit = 50) =>
    invoke<SearchHit[]>("search_messages", { text, groupId, limit }),
  retry: (groupId: string, messageId: string) =>
    invoke<void>("retry_message", { groupId, messageId }),
  markRead: (groupId: string) => invoke<void>("mark_read", { groupId }),
  setMuted: (groupId: string, muted: boolean) => invoke<void>("set_muted", { groupId, muted }),
  setTyping: (groupId: string, typing: boolean) => invoke<void>("set_typing", { groupId, typing }),
  createConversation: (name: string, members: string[]) =>
    invoke<string>("create_conversation", { name, members }),
  addMembers: (groupId: string, users: string[]) =>
    invoke<void>("add_members", { groupId, users }),
  removeMember: (groupId: string, userId: string) =>
    invoke<void>("remove_member", { groupId, userId }),
  leave: (groupId: string) => invoke<void>("leave_conversation", { groupId }),
  members: (groupId: string) => invoke<Member[]>("members", { groupId }),
  roomDetails: (groupId: string) => invoke<RoomDetails | null>("room_details", { groupId }),
  setRole: (groupId: string, userId: string, roleName: ConversationRole) =>
    invoke<void>("set_role", { groupId, userId, roleName }),
  setPolicy: (groupId: string, actionName: PolicyAction, roleName: ConversationRole) =>
    invoke<void>("set_policy", { groupId, actionName, roleName }),
  setTimer: (groupId: string, secs: number | null) => invoke<void>("set_timer", { groupId, secs }),
  rename: (groupId: string, name: string) =>
    invoke<void>("rename_conversation", { groupId, name }),
  searchDirectory: (query: string) => invoke<Person[]>("search_directory", { query }),
  devices: () => invoke<Devices>("devices"),
  changePassphrase: (current: string, next: string) =>
    invoke<void>("change_passphrase", { current, new: next }),
  safetyNumber: (groupId: string, userId: string) =>
    invoke<string>("safety_number", { groupId, userId }),
  getSettings: () => invoke<Settings>("get_settings"),
  setSettings: (settings: Settings) => invoke<Settings>("set_settings", { settings }),
  onEvent: (handler: (e: CascadeEvent) => void): Promise<UnlistenFn> =>
    listen<CascadeEvent>("cascade", (e) => handler(e.payload)),
};
