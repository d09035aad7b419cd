// Searching this device's history: what counts as a query, and the text of
// a result cut into plain and matched pieces for highlighting.

/** The fewest characters a search word needs (the index's trigrams). */
export const MIN_SEARCH_CHARS = 3;

/** Whether `query` has a word long enough to search for. */
export function searchable(query: string): boolean {
  return query
    .split(/\s+/)
    .some((w) => [...w].length >= MIN_SEARCH_CHARS);
}

export interface Segment {
  text: string;
  match: boolean;
}

/**
 * `text` cut at the `[start, end)` ranges (UTF-16 units, sorted, not
 * overlapping, as the app sends them) into plain and matched pieces.
 * Ranges outside the text are clipped; none at all gives one plain piece.
 */
export function segments(text: string, matches: [number, number][]): Segment[] {
  const out: Segment[] = [];
  let at = 0;
  for (const [a, b] of matches) {
    const start = Math.max(at, Math.min(a, text.length));
    const end = Math.max(start, Math.min(b, text.length));
    if (start > at) out.push({ text: text.slice(at, start), match: false });
    if (end > start) out.push({ text: text.slice(start, end), match: true });
    at = end;
  }
  if (at < text.length) out.push({ text: text.slice(at), match: false });
  return out;
}
