// Conversation list logic: order, badges and the cross-organisation marker.

import { dayKey, timeOfDay } from "./timeline";
import type { Conversation } from "./types";

const MONTHS_SHORT = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");

/**
 * Most recently active first; ties by name so the order is stable. Every
 * conversation gets a name to show ({@link conversationTitle}).
 */
export function sortConversations(list: Conversation[]): Conversation[] {
  return list
    .map((c) => ({ ...c, name: conversationTitle(c) }))
    .sort((a, b) => b.lastActivity - a.lastActivity || a.name.localeCompare(b.name));
}

/**
 * The name to show. A conversation's name travels inside MLS with its
 * first message; until that arrives (or if a client sent none) it has none.
 */
export function conversationTitle(c: Conversation): string {
  const name = c.name.trim();
  if (name) return name;
  return c.memberCount > 1 ? `Unnamed conversation (${c.memberCount} people)` : "Unnamed conversation";
}

/** Whether a conversation includes members of another organisation. */
export function isCrossOrg(c: Conversation, ownOrg: string): boolean {
  return c.orgs.some((o) => o !== ownOrg);
}

/** The organisations to badge: the others first (they are the news). */
export function badgeOrgs(c: Conversation, ownOrg: string): string[] {
  return [...c.orgs.filter((o) => o !== ownOrg), ...c.orgs.filter((o) => o === ownOrg)];
}

/** A stable colour hue for an organisation id, so a badge is recognisable. */
export function orgHue(org: string): number {
  let h = 2166136261;
  for (let i = 0; i < org.length; i++) {
    h ^= org.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0) % 360;
}

/** The list's short time: clock time today, else the date. */
export function activityLabel(ms: number, now: number): string {
  if (ms === 0) return "";
  if (dayKey(ms) === dayKey(now)) return timeOfDay(ms);
  const d = new Date(ms);
  return `${d.getDate()} ${MONTHS_SHORT[d.getMonth()]}`;
}

/** Two letters for an avatar: initials of the first and last word. */
export function initials(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) return "?";
  const first = words[0][0] ?? "";
  const last = words.length > 1 ? (words[words.length - 1][0] ?? "") : "";
  return (first + last).toUpperCase();
}

/**
 * The next conversation for keyboard navigation (Alt+Up/Alt+Down or the
 * arrow keys in the list), clamped at the ends.
 */
export function neighbour(list: Conversation[], current: string | null, step: 1 | -1): string | null {
  if (list.length === 0) return null;
  const i = list.findIndex((c) => c.id === current);
  if (i < 0) return list[0].id;
  const j = Math.min(list.length - 1, Math.max(0, i + step));
  return list[j].id;
}

/** Who is typing, as the line under the conversation says it; null when nobody is. */
export function typingLine(userIds: string[], nameOf: (u: string) => string): string | null {
  const names = userIds.map(nameOf);
  switch (names.length) {
    case 0:
      return null;
    case 1:
      return `${names[0]} is typing…`;
    case 2:
      return `${names[0]} and ${names[1]} are typing…`;
    case 3:
      return `${names[0]}, ${names[1]} and ${names[2]} are typing…`;
    default:
      return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
  }
}

/** Typing indicators per conversation: who, until when (ms). */
export type TypingState = Record<string, Record<string, number>>;

/** The state after an indicator: `until` 0 (or past) removes the person. */
export function applyTyping(
  state: TypingState,
  groupId: string,
  userId: string,
  until: number,
  now: number,
): TypingState {
  const inGroup = { ...(state[groupId] ?? {}) };
  if (until > now) inGroup[userId] = until;
  else delete inGroup[userId];
  for (const [u, t] of Object.entries(inGroup)) if (t <= now) delete inGroup[u];
  return { ...state, [groupId]: inGroup };
}

/** Who is typing in a conversation now, sorted. */
export function typists(state: TypingState, groupId: string, now: number): string[] {
  return Object.entries(state[groupId] ?? {})
    .filter(([, t]) => t > now)
    .map(([u]) => u)
    .sort();
}
