import { describe, expect, it } from "vitest";
import {
  activityLabel,
  badgeOrgs,
  initials,
  isCrossOrg,
  neighbour,
  orgHue,
  sortConversations,
} from "../src/lib/conversations";
import { applyTyping, typingLine, typists, type TypingState } from "../src/lib/conversations";
import {
  composerAction,
  insertMention,
  mentionAt,
  outgoingText,
  suggestMentions,
} from "../src/lib/composer";
import type { Conversation } from "../src/lib/types";

function conv(id: string, lastActivity: number, orgs: string[] = ["north"]): Conversation {
  return {
    id,
    name: id,
    state: "active",
    unread: 0,
    lastActivity,
    lastMessage: null,
    orgs,
    memberCount: 2,
    muted: false,
  };
}

describe("conversation list", () => {
  it("orders by latest activity, then by name", () => {
    const sorted = sortConversations([conv("b", 5), conv("a", 5), conv("c", 9)]);
    expect(sorted.map((c) => c.id)).toEqual(["c", "a", "b"]);
  });

  it("names a conversation whose name has not arrived", () => {
    const unnamed = { ...conv("x", 1), name: " ", memberCount: 3 };
    expect(sortConversations([unnamed])[0].name).toBe("Unnamed conversation (3 people)");
    expect(sortConversations([conv("Ward 7", 1)])[0].name).toBe("Ward 7");
  });

  it("marks conversations that include another organisation", () => {
    expect(isCrossOrg(conv("x", 0, ["north"]), "north")).toBe(false);
    expect(isCrossOrg(conv("x", 0, ["east", "north"]), "north")).toBe(true);
    expect(badgeOrgs(conv("x", 0, ["east", "north", "west"]), "north")).toEqual([
      "east",
      "west",
      "north",
    ]);
  });

  it("gives each organisation a stable colour", () => {
    expect(orgHue("north-trust")).toBe(orgHue("north-trust"));
    expect(orgHue("north-trust")).not.toBe(orgHue("east-ambulance"));
    expect(orgHue("x")).toBeGreaterThanOrEqual(0);
    expect(orgHue("x")).toBeLessThan(360);
  });

  it("moves through the list with the keyboard, stopping at the ends", () => {
    const list = [conv("a", 3), conv("b", 2), conv("c", 1)];
    expect(neighbour(list, "a", 1)).toBe("b");
    expect(neighbour(list, "c", 1)).toBe("c");
    expect(neighbour(list, "a", -1)).toBe("a");
    expect(neighbour(list, null, 1)).toBe("a");
    expect(neighbour([], null, 1)).toBe(null);
  });

  it("makes initials from names", () => {
    expect(initials("Alice Smith")).toBe("AS");
    expect(initials("  bob ")).toBe("B");
    expect(initials("Mary Jane Watson")).toBe("MW");
    expect(initials("")).toBe("?");
  });
});

describe("typing", () => {
  it("says who is typing", () => {
    const name = (u: string) => u.split("@")[0];
    expect(typingLine([], name)).toBeNull();
    expect(typingLine(["bob@south"], name)).toBe("bob is typing…");
    expect(typingLine(["a@x", "b@x"], name)).toBe("a and b are typing…");
    expect(typingLine(["a@x", "b@x", "c@x", "d@x", "e@x"], name)).toBe("a, b and 3 others are typing…");
  });
  it("keeps each person until their indicator lapses or they stop", () => {
    let s: TypingState = {};
    s = applyTyping(s, "g", "bob@south", 6_000, 0);
    s = applyTyping(s, "g", "carol@north", 9_000, 1_000);
    expect(typists(s, "g", 2_000)).toEqual(["bob@south", "carol@north"]);
    expect(typists(s, "g", 7_000)).toEqual(["carol@north"]);
    expect(typists(s, "other", 0)).toEqual([]);
    s = applyTyping(s, "g", "carol@north", 0, 2_000);
    expect(typists(s, "g", 2_000)).toEqual(["bob@south"]);
    s = applyTyping(s, "g", "", 0, 6_500);
    expect(s.g).toEqual({});
  });
});

describe("mentions in the composer", () => {
  const people = [
    { userId: "bob@south", displayName: "Bob Jones" },
    { userId: "bobby@north", displayName: "Roberta Kay" },
    { userId: "carol@north", displayName: "Carol Bobbins" },
  ];
  it("finds the @ being typed, not one inside a word", () => {
    expect(mentionAt("ask @bo", 7)).toEqual({ start: 4, query: "bo" });
    expect(mentionAt("@", 1)).toEqual({ start: 0, query: "" });
    expect(mentionAt("ask (@bob@sou", 13)).toEqual({ start: 5, query: "bob@sou" });
    expect(mentionAt("mail me@bo", 10)).toBeNull();
    expect(mentionAt("ask @bo now", 11)).toBeNull();
  });
  it("ranks names and ids that start with the query first", () => {
    expect(suggestMentions(people, "bob").map((p) => p.userId)).toEqual([
      "bob@south",
      "bobby@north",
      "carol@north",
    ]);
    expect(suggestMentions(people, "kay").map((p) => p.userId)).toEqual(["bobby@north"]);
    expect(suggestMentions(people, "zz")).toEqual([]);
  });
  it("writes the handle and puts the caret after it", () => {
    expect(insertMention("ask @bo now", 4, 7, "bob@south")).toEqual({
      draft: "ask @bob@south now",
      caret: 15,
    });
  });
});

describe("composer keys", () => {
  it("sends on Enter, breaks the line on Shift+Enter, leaves IME input alone", () => {
    expect(composerAction({ key: "Enter", shiftKey: false })).toBe("send");
    expect(composerAction({ key: "Enter", shiftKey: true })).toBe("newline");
    expect(composerAction({ key: "Enter", shiftKey: false, isComposing: true })).toBe("none");
    expect(composerAction({ key: "a", shiftKey: false })).toBe("none");
  });

  it("sends nothing blank and keeps inner new lines", () => {
    expect(outgoingText("   \n ")).toBe(null);
    expect(outgoingText("line one\nline two\n\n")).toBe("line one\nline two");
    expect(outgoingText("  indented")).toBe("  indented");
  });
});

describe("activityLabel", () => {
  it("shows the time today and the date before", () => {
    const now = new Date(2026, 10, 24, 15, 0).getTime();
    expect(activityLabel(new Date(2026, 10, 24, 9, 5).getTime(), now)).toBe("09:05");
    expect(activityLabel(new Date(2026, 10, 20, 9, 5).getTime(), now)).toBe("20 Nov");
    expect(activityLabel(0, now)).toBe("");
  });
});
