import { fireEvent, render, screen } from "@testing-library/svelte";
import { describe, expect, it, vi } from "vitest";
import Composer from "../src/components/Composer.svelte";
import ConversationList from "../src/components/ConversationList.svelte";
import MessageBubble from "../src/components/MessageBubble.svelte";
import type { Conversation, Message } from "../src/lib/types";
import { testMessage } from "./factories";

const NOW = new Date(2026, 10, 24, 15, 0).getTime();

describe("ConversationList", () => {
  const conversations: Conversation[] = [
    {
      id: "g1",
      name: "Regional on-call",
      state: "active",
      unread: 3,
      lastActivity: NOW - 60_000,
      lastMessage: "Bed state at 14:00",
      orgs: ["east-ambulance", "north-trust"],
      memberCount: 3,
      muted: true,
    },
    {
      id: "g2",
      name: "Ward 7",
      state: "active",
      unread: 0,
      lastActivity: NOW - 3_600_000,
      lastMessage: null,
      orgs: ["north-trust"],
      memberCount: 2,
      muted: false,
    },
  ];

  it("shows unread counts, badges and the cross-organisation marker", () => {
    render(ConversationList, {
      conversations,
      selected: "g2",
      ownOrg: "north-trust",
      now: NOW,
      onselect: () => {},
    });
    const rows = screen.getAllByTestId("conversation");
    expect(rows).toHaveLength(2);
    // The accessible name is the visible text plus what the symbols mean.
    expect(rows[0].textContent).toContain("(includes other organisations)");
    expect(rows[0].textContent).toContain("3 unread");
    expect(screen.getAllByTestId("unread").map((e) => e.textContent)).toEqual(["3 unread"]);
    expect(screen.getAllByTestId("cross-org")).toHaveLength(1);
    // The muted one says so.
    expect(screen.getAllByTestId("muted")).toHaveLength(1);
    expect(rows[0].querySelector("[data-testid=muted]")?.getAttribute("aria-label")).toBe("muted");
    expect(rows[1].getAttribute("aria-current")).toBe("true");
    // Only the selected row is in the tab order; arrows move within the list.
    expect(rows.map((r) => r.tabIndex)).toEqual([-1, 0]);
  });

  it("selects with the arrow keys", async () => {
    const onselect = vi.fn();
    render(ConversationList, {
      conversations,
      selected: "g2",
      ownOrg: "north-trust",
      now: NOW,
      onselect,
    });
    await fireEvent.keyDown(screen.getAllByTestId("conversation")[1], { key: "ArrowUp" });
    expect(onselect).toHaveBeenCalledWith("g1", true);
    // Alt+arrows belongs to the window, not the list.
    onselect.mockClear();
    await fireEvent.keyDown(screen.getAllByTestId("conversation")[1], {
      key: "ArrowUp",
      altKey: true,
    });
    expect(onselect).not.toHaveBeenCalled();
  });
});

describe("MessageBubble", () => {
  const failed = testMessage({
    id: "m1",
    groupId: "g1",
    sender: "alice@north-trust",
    mine: true,
    sentAt: NOW,
    text: "Can you cover bay 3?",
    state: "failed",
  });

  it("offers a retry for a failed message of mine", async () => {
    const onretry = vi.fn();
    render(MessageBubble, { message: failed, sender: undefined, showSender: false, ownOrg: "north-trust", onretry });
    expect(screen.getByTestId("delivery").getAttribute("aria-label")).toBe("Not sent");
    await fireEvent.click(screen.getByTestId("retry"));
    expect(onretry).toHaveBeenCalledWith(failed);
  });

  it("shows the verified sender and no delivery mark on others' messages", () => {
    render(MessageBubble, {
      message: { ...failed, mine: false, state: "received", sender: "bob@east-ambulance" },
      sender: {
        userId: "bob@east-ambulance",
        displayName: "Bob Jones",
        role: "Paramedic",
        orgId: "east-ambulance",
        isSelf: false,
        devices: ["d"],
        certificateExpires: 0,
        conversationRole: "member",
      },
      showSender: true,
      ownOrg: "north-trust",
      onretry: () => {},
    });
    expect(screen.getByText("Bob Jones")).toBeTruthy();
    expect(screen.getByTestId("org-badge").textContent).toBe("east-ambulance");
    expect(screen.queryByTestId("delivery")).toBeNull();
  });

  it("survives a timestamp that is not a date", () => {
    render(MessageBubble, {
      message: { ...failed, sentAt: 9e15, state: "received", mine: false },
      sender: undefined,
      showSender: false,
      ownOrg: "north-trust",
      onretry: () => {},
    });
    expect(screen.getByTestId("message-text").textContent).toBe("Can you cover bay 3?");
  });

  it("says so for a kind this version cannot show", () => {
    render(MessageBubble, {
      message: { ...failed, text: null, kind: "poll", state: "received", mine: false },
      sender: undefined,
      showSender: false,
      ownOrg: "north-trust",
      onretry: () => {},
    });
    expect(screen.getByText(/This message \(poll\) needs a newer version/)).toBeTruthy();
  });

  function actions() {
    return {
      reply: vi.fn(),
      edit: vi.fn(),
      remove: vi.fn(async () => {}),
      toggleReaction: vi.fn(async () => {}),
      versions: vi.fn(async () => [{ text: "Can you cover bay 2?", at: NOW - 60_000 }]),
      receipts: vi.fn(async () => ({
        recipients: 3,
        delivered: [
          { userId: "bob@north-trust", at: NOW - 50_000 },
          { userId: "carol@north-trust", at: NOW - 40_000 },
        ],
        read: [{ userId: "bob@north-trust", at: NOW - 30_000 }],
        perPersonDelivery: true,
      })),
      jump: vi.fn(),
    };
  }

  it("says how many read my message, and who on demand", async () => {
    const a = actions();
    const message: Message = { ...failed, state: "delivered", readBy: 1 };
    render(MessageBubble, {
      message,
      sender: undefined,
      showSender: false,
      ownOrg: "north-trust",
      onretry: () => {},
      actions: a,
      nameOf: (u: string) => (u === "bob@north-trust" ? "Bob Singh" : u),
    });
    const label = screen.getByTestId("read-by");
    expect(label.textContent).toBe("Read by 1");
    await fireEvent.click(label);
    expect(a.receipts).toHaveBeenCalledWith(message);
    await vi.waitFor(() =>
      expect(screen.getByTestId("receipts-summary").textContent).toBe(
        "Delivered to 2 of 3, read by 1",
      ),
    );
    const rows = screen.getAllByTestId("receipt").map((r) => r.textContent?.replace(/\s+/g, " "));
    expect(rows[0]).toContain("Bob Singh — read");
    expect(rows[1]).toContain("carol@north-trust — delivered");
    // Closed again, it stays closed (no fetch brings it back).
    await fireEvent.click(label);
    await new Promise((r) => setTimeout(r, 20));
    expect(screen.queryByTestId("receipts")).toBeNull();
    expect(a.receipts).toHaveBeenCalledTimes(1);
  });

  it("shows no read count on others' messages", () => {
    render(MessageBubble, {
      message: { ...failed, mine: false, state: "received", readBy: 2 },
      sender: undefined,
      showSender: false,
      ownOrg: "north-trust",
      onretry: () => {},
      actions: actions(),
    });
    expect(screen.queryByTestId("read-by")).toBeNull();
    expect(screen.queryByTestId("receipts-button")).toBeNull();
  });

  it("shows the quote, the edited mark with earlier versions, and reactions", async () => {
    const a = actions();
    const message: Message = {
      ...failed,
      state: "sent",
      replyTo: { id: "m0", sender: "bob@north-trust", text: "Who has bay 3?", deleted: false },
      editedAt: NOW,
      reactions: [{ emoji: "👍", users: ["bob@north-trust", "carol@north-trust"], mine: false }],
    };
    render(MessageBubble, {
      message,
      sender: undefined,
      showSender: false,
      ownOrg: "north-trust",
      onretry: () => {},
      actions: a,
      nameOf: (u: string) => (u === "bob@north-trust" ? "Bob Singh" : u),
    });
    expect(screen.getByTestId("quote").textContent).toContain("Bob Singh: Who has bay 3?");
    await fireEvent.click(screen.getByTestId("quote"));
    expect(a.jump).toHaveBeenCalledWith("m0");
    await fireEvent.click(screen.getByTestId("edited"));
    await vi.waitFor(() =>
      expect(screen.getByTestId("versions").textContent).toContain("Can you cover bay 2?"),
    );
    const chip = screen.getByTestId("reaction");
    expect(chip.getAttribute("aria-label")).toBe("👍 2: Bob Singh, carol@north-trust");
    expect(chip.getAttribute("aria-pressed")).toBe("false");
    await fireEvent.click(chip);
    expect(a.toggleReaction).toHaveBeenCalledWith(message, "👍");
  });

  it("asks before deleting for everyone, and shows the tombstone after", async () => {
    const a = actions();
    const message: Message = { ...failed, state: "sent" };
    const { unmount } = render(MessageBubble, {
      message,
      sender: undefined,
      showSender: false,
      ownOrg: "north-trust",
      onretry: () => {},
      actions: a,
    });
    await fireEvent.click(screen.getByTestId("delete"));
    expect(a.remove).not.toHaveBeenCalled();
    await fireEvent.click(screen.getByTestId("confirm-delete"));
    expect(a.remove).toHaveBeenCalledWith(message);
    unmount();
    render(MessageBubble, {
      message: { ...message, text: null, deletedBy: "alice@north-trust" },
      sender: undefined,
      showSender: false,
      ownOrg: "north-trust",
      onretry: () => {},
      actions: a,
      nameOf: () => "Alice Okafor",
    });
    expect(screen.getByTestId("tombstone").textContent).toBe("Deleted by Alice Okafor");
    expect(screen.queryByTestId("message-actions")).toBeNull();
  });

  it("offers edit and delete only on my own messages", () => {
    render(MessageBubble, {
      message: { ...failed, mine: false, state: "received", sender: "bob@north-trust" },
      sender: undefined,
      showSender: false,
      ownOrg: "north-trust",
      onretry: () => {},
      actions: actions(),
    });
    expect(screen.getByTestId("reply")).toBeTruthy();
    expect(screen.queryByTestId("edit")).toBeNull();
    expect(screen.queryByTestId("delete")).toBeNull();
  });
});

describe("MessageBubble mentions", () => {
  it("shows mentions apart, and this user's marked", () => {
    render(MessageBubble, {
      message: testMessage({
        text: "@Bob Jones and @Alice Smith: bed 4",
        segments: [
          { text: "@Bob Jones", mention: "bob@south", me: true },
          { text: " and ", mention: null, me: false },
          { text: "@Alice Smith", mention: "alice@north", me: false },
          { text: ": bed 4", mention: null, me: false },
        ],
        mentionsMe: true,
      }),
      sender: undefined,
      showSender: false,
      ownOrg: "north",
      onretry: () => {},
    });
    expect(screen.getByTestId("message-text").textContent).toBe("@Bob Jones and @Alice Smith: bed 4");
    expect(screen.getByTestId("mention-me").textContent).toBe("@Bob Jones");
    expect(screen.getByTestId("mention").getAttribute("title")).toBe("alice@north");
  });
});

describe("Composer", () => {
  it("sends on Enter and keeps the text on Shift+Enter", async () => {
    const onsend = vi.fn(async () => true);
    render(Composer, { placeholder: "Message", onsend });
    const box = screen.getByTestId("composer") as HTMLTextAreaElement;
    await fireEvent.input(box, { target: { value: "first line" } });
    await fireEvent.keyDown(box, { key: "Enter", shiftKey: true });
    expect(onsend).not.toHaveBeenCalled();
    await fireEvent.keyDown(box, { key: "Enter" });
    expect(onsend).toHaveBeenCalledWith("first line");
    expect(box.value).toBe("");
  });

  it("offers members after @ and writes the chosen one's user id", async () => {
    const onsend = vi.fn(async () => true);
    const people = [
      { userId: "bob@south", displayName: "Bob Jones" },
      { userId: "carol@north", displayName: "Carol Shaw" },
    ];
    render(Composer, { placeholder: "Message", onsend, people });
    const box = screen.getByTestId("composer") as HTMLTextAreaElement;
    await fireEvent.input(box, { target: { value: "ask @jo" } });
    const options = screen.getAllByTestId("mention-option");
    expect(options.map((o) => o.textContent?.trim())).toEqual(["Bob Jones @bob@south"]);
    expect(box.getAttribute("aria-controls")).toBe("mention-list");
    expect(box.getAttribute("aria-activedescendant")).toBe("mention-0");
    expect(options[0].getAttribute("aria-selected")).toBe("true");
    // Enter chooses, it does not send.
    await fireEvent.keyDown(box, { key: "Enter" });
    expect(onsend).not.toHaveBeenCalled();
    expect(box.value).toBe("ask @bob@south ");
    expect(screen.queryByTestId("mention-list")).toBeNull();
    await fireEvent.keyDown(box, { key: "Enter" });
    expect(onsend).toHaveBeenCalledWith("ask @bob@south");
  });

  it("closes the list on Escape and keeps what was typed", async () => {
    const onsend = vi.fn(async () => true);
    const people = [{ userId: "bob@south", displayName: "Bob Jones" }];
    render(Composer, { placeholder: "Message", onsend, people });
    const box = screen.getByTestId("composer") as HTMLTextAreaElement;
    await fireEvent.input(box, { target: { value: "@b" } });
    expect(screen.getByTestId("mention-list")).toBeTruthy();
    await fireEvent.keyDown(box, { key: "Escape" });
    expect(screen.queryByTestId("mention-list")).toBeNull();
    await fireEvent.keyDown(box, { key: "Enter" });
    expect(onsend).toHaveBeenCalledWith("@b");
  });

  it("gives the draft back if sending failed", async () => {
    const onsend = vi.fn(async () => false);
    render(Composer, { placeholder: "Message", onsend });
    const box = screen.getByTestId("composer") as HTMLTextAreaElement;
    await fireEvent.input(box, { target: { value: "keep me" } });
    await fireEvent.keyDown(box, { key: "Enter" });
    await vi.waitFor(() => expect(box.value).toBe("keep me"));
  });
});

describe("Unlock", () => {
  it("asks for a new passphrase twice and sends it only when both match", async () => {
    const { api } = await import("../src/lib/api");
    const status = {
      identity: null,
      locked: false,
      connection: "offline",
      certificatePending: false,
      suggestedRelay: "",
      ask: "nothing",
    } as const;
    const unlock = vi.spyOn(api, "unlock").mockResolvedValue(status);
    const onunlocked = vi.fn();
    const { default: Unlock } = await import("../src/components/Unlock.svelte");
    render(Unlock, { newPassphrase: true, onunlocked });
    const [first, again] = [
      screen.getByTestId("unlock-passphrase"),
      screen.getByTestId("unlock-passphrase-again"),
    ];
    expect(first.getAttribute("type")).toBe("password");
    await fireEvent.input(first, { target: { value: "correct horse battery" } });
    await fireEvent.input(again, { target: { value: "correct horse battery!" } });
    await fireEvent.click(screen.getByTestId("unlock-submit"));
    expect(screen.getByTestId("unlock-error").textContent).toContain("differ");
    expect(unlock).not.toHaveBeenCalled();
    await fireEvent.input(again, { target: { value: "correct horse battery" } });
    await fireEvent.click(screen.getByTestId("unlock-submit"));
    await vi.waitFor(() => expect(onunlocked).toHaveBeenCalledWith(status));
    expect(unlock).toHaveBeenCalledWith("correct horse battery");
  });

  it("says it is locked, and with a keystore asks nothing to type", async () => {
    const { api } = await import("../src/lib/api");
    const status = {
      identity: null,
      locked: false,
      connection: "online",
      certificatePending: false,
      suggestedRelay: "",
      ask: "nothing",
    } as const;
    const unlock = vi.spyOn(api, "unlock").mockResolvedValue(status);
    const onunlocked = vi.fn();
    const { default: Unlock } = await import("../src/components/Unlock.svelte");
    render(Unlock, { newPassphrase: false, locked: true, keystore: true, onunlocked });
    expect(screen.getByTestId("lock-screen").textContent).toContain("still arrive");
    expect(screen.queryByTestId("unlock-passphrase")).toBeNull();
    await fireEvent.click(screen.getByTestId("unlock-submit"));
    await vi.waitFor(() => expect(onunlocked).toHaveBeenCalledWith(status));
    expect(unlock).toHaveBeenCalledWith("");
  });
});
