// The chat view's list: messages in order with date separators, and the
// updates that live events and older pages make to it.

import type { DeliveryState, Message, Quote } from "./types";

/** The reactions offered with one click. */
export const QUICK_REACTIONS = ["👍", "✅", "👀", "❤️", "🙏"];

/** What a reply shows of the message it answers. */
export function quoteText(q: Quote, nameOf: (userId: string) => string): string {
  if (q.deleted) return "A deleted message";
  if (q.sender === null) return "A message not on this device";
  const who = nameOf(q.sender);
  if (q.text === null) return `${who}: a message this version cannot show`;
  const short = q.text.length > 80 ? `${q.text.slice(0, 80)}…` : q.text;
  return `${who}: ${short}`;
}

/**
 * A message changed (edited, deleted, reacted to): it replaces its old
 * self, and replies that quote it show its new text (or that it was
 * deleted). A message not in the list is not added.
 */
/**
 * Takes disappeared messages out of a conversation's list; a reply to one
 * keeps its place and shows its original as gone (the device no longer has
 * it, as after a reload).
 */
export function removeExpired(list: Message[], ids: string[]): Message[] {
  const gone = new Set(ids);
  return list
    .filter((x) => !gone.has(x.id))
    .map((x) =>
      x.replyTo !== null && gone.has(x.replyTo.id)
        ? { ...x, replyTo: { ...x.replyTo, sender: null, text: null } }
        : x,
    );
}

export function applyChange(list: Message[], m: Message): Message[] {
  return list.map((x) => {
    if (x.id === m.id) return m;
    if (x.replyTo?.id === m.id) {
      return {
        ...x,
        replyTo: {
          ...x.replyTo,
          text: m.deletedBy === null ? m.text : null,
          deleted: m.deletedBy !== null,
        },
      };
    }
    return x;
  });
}

export type TimelineItem =
  | { kind: "date"; key: string; label: string }
  | { kind: "message"; key: string; message: Message; firstOfRun: boolean }
  | { kind: "notice"; key: string; text: string };

/** The message kind of a line the device adds to the history itself (e.g.
 * that it rejoined the conversation); shown as a notice, not a bubble. */
export const SYSTEM_KIND = "system";

/** Local calendar day of a timestamp, as a sortable key. */
export function dayKey(ms: number): string {
  const d = new Date(ms);
  const mm = String(d.getMonth() + 1).padStart(2, "0");
  const dd = String(d.getDate()).padStart(2, "0");
  return `${d.getFullYear()}-${mm}-${dd}`;
}

const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
const MONTHS = [
  "January",
  "February",
  "March",
  "April",
  "May",
  "June",
  "July",
  "August",
  "September",
  "October",
  "November",
  "December",
];

/**
 * "Today", "Yesterday", a weekday within the last week, else a date
 * ("Mon 5 January", with the year if not this year). Built by hand, not
 * with Intl, so it reads the same in every web engine.
 */
export function dayLabel(ms: number, now: number): string {
  if (Number.isNaN(new Date(ms).getTime())) return "Unknown date";
  const day = dayKey(ms);
  if (day === dayKey(now)) return "Today";
  const yesterday = new Date(now);
  yesterday.setDate(yesterday.getDate() - 1);
  if (day === dayKey(yesterday.getTime())) return "Yesterday";
  const d = new Date(ms);
  const age = now - ms;
  if (age > 0 && age < 6 * 24 * 3600 * 1000) return WEEKDAYS[d.getDay()];
  const label = `${WEEKDAYS[d.getDay()].slice(0, 3)} ${d.getDate()} ${MONTHS[d.getMonth()]}`;
  return d.getFullYear() === new Date(now).getFullYear() ? label : `${label} ${d.getFullYear()}`;
}

/** The timestamp for a `<time datetime>`, or "" if it is not a valid date. */
export function isoTime(ms: number): string {
  const d = new Date(ms);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

/** Hours and minutes of a timestamp, 24-hour clock. */
/**
 * When a disappearing message goes: "Disappears at 14:05" on the day it is
 * sent, "Disappears on 12 Dec at 14:05" later.
 */
export function expiryLabel(at: number, sentAt: number): string {
  const a = new Date(at);
  const s = new Date(sentAt);
  if (a.toDateString() === s.toDateString()) return `Disappears at ${timeOfDay(at)}`;
  const day = a.toLocaleDateString("en-GB", { day: "numeric", month: "short" });
  return `Disappears on ${day} at ${timeOfDay(at)}`;
}

export function timeOfDay(ms: number): string {
  const d = new Date(ms);
  if (Number.isNaN(d.getTime())) return "";
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

/**
 * The items to render: a separator before the first message of each day,
 * a notice for a line the device added itself, and `firstOfRun` on a
 * message whose sender differs from the previous one's (or after a gap of
 * more than five minutes, or a notice), where the sender's name is shown.
 */
export function buildTimeline(messages: Message[], now: number): TimelineItem[] {
  const items: TimelineItem[] = [];
  let lastDay = "";
  let prev: Message | null = null;
  for (const m of messages) {
    const day = dayKey(m.sentAt);
    let newDay = false;
    if (day !== lastDay) {
      items.push({ kind: "date", key: `date-${day}`, label: dayLabel(m.sentAt, now) });
      lastDay = day;
      newDay = true;
    }
    if (m.kind === SYSTEM_KIND) {
      items.push({ kind: "notice", key: m.id, text: m.text ?? "" });
      prev = null; // the next message starts a run
      continue;
    }
    const firstOfRun =
      newDay || prev === null || prev.sender !== m.sender || m.sentAt - prev.sentAt > 5 * 60 * 1000;
    items.push({ kind: "message", key: m.id, message: m, firstOfRun });
    prev = m;
  }
  return items;
}

/**
 * Adds a live message: replaces one with the same id (a state update or a
 * duplicate), otherwise appends it. History is in arrival order, so a live
 * message goes at the end.
 */
export function upsertMessage(list: Message[], m: Message): Message[] {
  const i = list.findIndex((x) => x.id === m.id);
  if (i >= 0) {
    const copy = list.slice();
    copy[i] = m;
    return copy;
  }
  return [...list, m];
}

/**
 * The first page of a conversation, merged with what arrived while it was
 * loading: live messages (newer, or a newer state of one in the page) and
 * delivery states for messages that were not shown yet.
 */
export function mergeLoaded(
  page: Message[],
  live: Message[],
  lateStates: Map<string, DeliveryState>,
): Message[] {
  let list = page;
  for (const m of live) list = upsertMessage(list, m);
  for (const [id, state] of lateStates) list = applyDelivery(list, id, state);
  return list;
}

/** Puts an older page in front, without repeating any message. */
export function prependPage(list: Message[], older: Message[]): Message[] {
  const have = new Set(list.map((m) => m.id));
  return [...older.filter((m) => !have.has(m.id)), ...list];
}

/**
 * Applies a delivery state change. A state never goes backwards from
 * delivered to sent (events may arrive out of order with a reload), but a
 * failed message that is retried goes back to sending.
 */
export function applyDelivery(list: Message[], messageId: string, state: DeliveryState): Message[] {
  const rank: Record<DeliveryState, number> = {
    sending: 0,
    failed: 0,
    sent: 1,
    delivered: 2,
    received: 3,
  };
  return list.map((m) => {
    if (m.id !== messageId) return m;
    if (rank[state] < rank[m.state] && !(m.state === "failed" && state === "sending")) {
      return m;
    }
    return { ...m, state };
  });
}

/** The words a screen reader and the tooltip use for a delivery state. */
export function deliveryLabel(state: DeliveryState): string {
  switch (state) {
    case "sending":
      return "Sending";
    case "sent":
      return "Sent to the relay";
    case "delivered":
      return "Delivered to everyone";
    case "failed":
      return "Not sent";
    case "received":
      return "Received";
  }
}

/**
 * Takes the read counts of freshly loaded messages (after someone read the
 * conversation): only `readBy` changes, and only of messages in both lists.
 */
export function applyReadCounts(list: Message[], fresh: Message[]): Message[] {
  const counts = new Map(fresh.map((m) => [m.id, m.readBy]));
  return list.map((m) => {
    const n = counts.get(m.id);
    return n === undefined || n === m.readBy ? m : { ...m, readBy: n };
  });
}

/**
 * What a message of this user's says of who read it: "Read by 2", or
 * "Read by Bob Jones" when one person has; "" when nobody has yet.
 */
export function readLabel(readBy: number): string {
  return readBy === 0 ? "" : `Read by ${readBy}`;
}

/** The summary at the top of a message's read-by details. */
export function receiptsSummary(r: {
  recipients: number;
  delivered: unknown[];
  read: unknown[];
  perPersonDelivery: boolean;
}): string {
  return r.perPersonDelivery
    ? `Delivered to ${r.delivered.length} of ${r.recipients}, read by ${r.read.length}`
    : `Read by ${r.read.length} of ${r.recipients}`;
}
