import { describe, expect, it } from "vitest";
import {
  applyChange,
  removeExpired,
  expiryLabel,
  applyDelivery,
  applyReadCounts,
  buildTimeline,
  dayLabel,
  isoTime,
  mergeLoaded,
  prependPage,
  quoteText,
  readLabel,
  receiptsSummary,
  upsertMessage,
} from "../src/lib/timeline";
import type { Message } from "../src/lib/types";
import { testMessage } from "./factories";

const NOW = new Date(2026, 10, 24, 15, 0).getTime();
const HOUR = 3600 * 1000;

function msg(id: string, sentAt: number, sender = "alice@north", extra: Partial<Message> = {}): Message {
  return testMessage({ id, sentAt, sender, text: id, ...extra });
}

describe("buildTimeline", () => {
  it("puts one separator before each day's first message", () => {
    const items = buildTimeline(
      [msg("a", NOW - 30 * HOUR), msg("b", NOW - 29 * HOUR), msg("c", NOW - HOUR)],
      NOW,
    );
    expect(items.map((i) => (i.kind === "date" ? i.label : i.key))).toEqual([
      "Yesterday",
      "a",
      "b",
      "Today",
      "c",
    ]);
  });

  it("shows the sender at the start of each run, after a gap, and after a new day", () => {
    const items = buildTimeline(
      [
        msg("a", NOW - 3 * HOUR),
        msg("b", NOW - 3 * HOUR + 60_000),
        msg("c", NOW - 3 * HOUR + 120_000, "bob@east"),
        msg("d", NOW - 2 * HOUR, "bob@east"),
      ],
      NOW,
    );
    const runs = items.flatMap((i) => (i.kind === "message" ? [[i.key, i.firstOfRun]] : []));
    expect(runs).toEqual([
      ["a", true],
      ["b", false],
      ["c", true],
      ["d", true],
    ]);
  });

  it("shows a line the device added itself as a notice, and starts a new run after it", () => {
    const line = { ...msg("n", NOW - 2000), kind: "system", text: "This device fell out of step." };
    const items = buildTimeline([msg("a", NOW - 3000), line, msg("b", NOW - 1000)], NOW);
    expect(items.map((i) => i.kind)).toEqual(["date", "message", "notice", "message"]);
    expect(items[2]).toMatchObject({ text: "This device fell out of step." });
    expect(items[3]).toMatchObject({ firstOfRun: true });
  });

  it("is empty for no messages", () => {
    expect(buildTimeline([], NOW)).toEqual([]);
  });
});

describe("dayLabel", () => {
  it("names recent days and dates older ones", () => {
    expect(dayLabel(NOW - HOUR, NOW)).toBe("Today");
    expect(dayLabel(NOW - 24 * HOUR, NOW)).toBe("Yesterday");
    expect(dayLabel(NOW - 3 * 24 * HOUR, NOW)).toBe("Saturday");
    expect(dayLabel(new Date(2026, 0, 5).getTime(), NOW)).toBe("Mon 5 January");
    expect(dayLabel(new Date(2025, 0, 6).getTime(), NOW)).toBe("Mon 6 January 2025");
  });
});

describe("live updates", () => {
  it("replaces a message with the same id instead of repeating it", () => {
    const list = [msg("a", 1, "me", { mine: true, state: "sending" })];
    const next = upsertMessage(list, msg("a", 1, "me", { mine: true, state: "sent" }));
    expect(next).toHaveLength(1);
    expect(next[0].state).toBe("sent");
    expect(upsertMessage(next, msg("b", 2))).toHaveLength(2);
  });

  it("prepends an older page without duplicates", () => {
    const list = [msg("c", 3), msg("d", 4)];
    const next = prependPage(list, [msg("a", 1), msg("b", 2), msg("c", 3)]);
    expect(next.map((m) => m.id)).toEqual(["a", "b", "c", "d"]);
  });

  it("moves delivery states forward only, except a retried failure", () => {
    let list = [msg("a", 1, "me", { mine: true, state: "sending" })];
    list = applyDelivery(list, "a", "delivered");
    expect(list[0].state).toBe("delivered");
    list = applyDelivery(list, "a", "sent");
    expect(list[0].state).toBe("delivered");
    list = [msg("b", 1, "me", { mine: true, state: "failed" })];
    list = applyDelivery(list, "b", "sending");
    expect(list[0].state).toBe("sending");
    expect(applyDelivery(list, "zzz", "sent")).toEqual(list);
  });
});

describe("read receipts", () => {
  it("takes only the read counts of freshly loaded messages", () => {
    const list = [
      msg("a", 1, "me", { mine: true, readBy: 0 }),
      msg("b", 2, "me", { mine: true, readBy: 1 }),
      msg("c", 3, "bob"),
    ];
    const fresh = [
      msg("a", 1, "me", { mine: true, readBy: 2, text: "changed meanwhile" }),
      msg("b", 2, "me", { mine: true, readBy: 1 }),
    ];
    const next = applyReadCounts(list, fresh);
    expect(next.map((m) => m.readBy)).toEqual([2, 1, 0]);
    expect(next[0].text).toBe(list[0].text);
    expect(next[1]).toBe(list[1]);
    expect(next[2]).toBe(list[2]);
  });

  it("says who read a message in words", () => {
    expect(readLabel(0)).toBe("");
    expect(readLabel(3)).toBe("Read by 3");
    const r = { recipients: 7, delivered: [1, 2, 3, 4, 5], read: [1, 2, 3] };
    expect(receiptsSummary({ ...r, perPersonDelivery: true })).toBe(
      "Delivered to 5 of 7, read by 3",
    );
    expect(receiptsSummary({ ...r, perPersonDelivery: false })).toBe("Read by 3 of 7");
  });
});

describe("loading a conversation", () => {
  it("keeps what arrived while the first page loaded", () => {
    const page = [msg("a", 1), msg("b", 2, "me", { mine: true, state: "sent" })];
    const live = [msg("c", 3), msg("b", 2, "me", { mine: true, state: "sent" })];
    const late = new Map([["b", "delivered" as const]]);
    const merged = mergeLoaded(page, live, late);
    expect(merged.map((m) => [m.id, m.state])).toEqual([
      ["a", "received"],
      ["b", "delivered"],
      ["c", "received"],
    ]);
  });

  it("gives no date for a timestamp beyond what a Date holds", () => {
    expect(isoTime(9e15)).toBe("");
    expect(dayLabel(9e15, NOW)).toBe("Unknown date");
    expect(buildTimeline([msg("x", 9e15)], NOW)[0]).toMatchObject({ label: "Unknown date" });
    expect(isoTime(0)).toBe("1970-01-01T00:00:00.000Z");
  });
});

describe("expiryLabel", () => {
  it("says the time on the day, and the day after it", () => {
    expect(expiryLabel(NOW + HOUR, NOW)).toBe("Disappears at 16:00");
    expect(expiryLabel(NOW + 24 * HOUR, NOW)).toBe("Disappears on 25 Nov at 15:00");
  });
});

describe("removeExpired", () => {
  it("takes out disappeared messages and shows a reply's original as gone", () => {
    const original = msg("a", NOW);
    const reply = msg("b", NOW + 1, "bob@north", {
      replyTo: { id: "a", sender: "alice@north", text: "a", deleted: false },
    });
    const other = msg("c", NOW + 2);
    const list = removeExpired([original, reply, other], ["a"]);
    expect(list.map((m) => m.id)).toEqual(["b", "c"]);
    expect(list[0].replyTo).toEqual({ id: "a", sender: null, text: null, deleted: false });
    expect(removeExpired(list, ["nothing"])).toEqual(list);
  });
});

describe("applyChange", () => {
  it("replaces the message and updates the replies that quote it", () => {
    const original = msg("a", NOW - HOUR, "alice@north", { text: "bed 4 at 14:00" });
    const reply = msg("b", NOW, "bob@north", {
      replyTo: { id: "a", sender: "alice@north", text: "bed 4 at 14:00", deleted: false },
    });
    const other = msg("c", NOW);
    const edited = { ...original, text: "bed 4 at 15:00", editedAt: NOW };
    let list = applyChange([original, reply, other], edited);
    expect(list[0]).toEqual(edited);
    expect(list[1].replyTo?.text).toBe("bed 4 at 15:00");
    expect(list[2]).toBe(other);
    list = applyChange(list, { ...edited, text: null, deletedBy: "alice@north" });
    expect(list[1].replyTo).toEqual({ id: "a", sender: "alice@north", text: null, deleted: true });
    // A change to a message not loaded adds nothing.
    expect(applyChange(list, msg("z", NOW))).toHaveLength(3);
  });
});

describe("quoteText", () => {
  const name = (u: string) => (u === "alice@north" ? "Alice" : u);
  it("says who and what, or why not", () => {
    expect(quoteText({ id: "a", sender: "alice@north", text: "hi", deleted: false }, name)).toBe(
      "Alice: hi",
    );
    expect(quoteText({ id: "a", sender: null, text: null, deleted: false }, name)).toBe(
      "A message not on this device",
    );
    expect(quoteText({ id: "a", sender: "alice@north", text: null, deleted: true }, name)).toBe(
      "A deleted message",
    );
    expect(
      quoteText({ id: "a", sender: "alice@north", text: "x".repeat(100), deleted: false }, name),
    ).toBe(`Alice: ${"x".repeat(80)}…`);
  });
});
