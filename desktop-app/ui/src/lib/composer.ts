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
