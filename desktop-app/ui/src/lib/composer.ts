// What a key press in the composer means.

export type ComposerAction = "send" | "newline" | "none";

export interface KeyLike {
  key: string;
  shiftKey: boolean;
  isComposing?: boolean;
}

/**
 * Enter sends; Shift+Enter makes a new line; Enter while an input method
 * is composing (e.g. accented or CJK input) belongs to the input method.
 */
export function composerAction(e: KeyLike): ComposerAction {
  if (e.key !== "Enter" || e.isComposing) return "none";
  return e.shiftKey ? "newline" : "send";
}

/** The text to send, or null if there is nothing to send. */
export function outgoingText(draft: string): string | null {
  const t = draft.replace(/^\s*\n|\s+$/g, "");
  return t.trim() === "" ? null : t;
}

/** Someone the composer can mention. */
export interface Mentionable {
  userId: string;
  displayName: string;
}

/** The `@` being typed just before the caret, if any: where it starts and what follows it. */
export function mentionAt(draft: string, caret: number): { start: number; query: string } | null {
  const before = draft.slice(0, caret);
  const m = /(^|[\s(\[{"'])@([^\s@]*(?:@[a-z0-9-]*)?)$/i.exec(before);
  if (!m) return null;
  return { start: before.length - m[2].length - 1, query: m[2] };
}

/** The people whose name or user id matches what follows the `@`: names starting with it first. */
export function suggestMentions(people: Mentionable[], query: string, limit = 6): Mentionable[] {
  const q = query.toLowerCase();
  const score = (p: Mentionable) => {
    const name = p.displayName.toLowerCase();
    const id = p.userId.toLowerCase();
    if (name.startsWith(q) || id.startsWith(q)) return 0;
    if (name.split(/\s+/).some((w) => w.startsWith(q))) return 1;
    if (name.includes(q) || id.includes(q)) return 2;
    return -1;
  };
  return people
    .map((p) => ({ p, s: score(p) }))
    .filter((x) => x.s >= 0)
    .sort((a, b) => a.s - b.s || a.p.displayName.localeCompare(b.p.displayName))
    .slice(0, limit)
    .map((x) => x.p);
}

/** The draft with the `@query` from `start` to `caret` replaced by the person's handle, and the caret after it. */
export function insertMention(
  draft: string,
  start: number,
  caret: number,
  userId: string,
): { draft: string; caret: number } {
  const handle = `@${userId} `;
  const after = draft.slice(caret).replace(/^ /, "");
  return { draft: draft.slice(0, start) + handle + after, caret: start + handle.length };
}
