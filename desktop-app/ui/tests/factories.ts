// Test data shared by the UI tests: one message with every field set, to
// override what a test is about.

import type { Message } from "../src/lib/types";

/** A received text from alice@north in conversation `g`. */
export function testMessage(overrides: Partial<Message> = {}): Message {
  return {
    id: "m",
    groupId: "g",
    sender: "alice@north",
    senderDevice: "d",
    mine: false,
    sentAt: 0,
    seq: null,
    text: "hello",
    kind: "text",
    state: "received",
    replyTo: null,
    editedAt: null,
    deletedBy: null,
    reactions: [],
    expiresAt: null,
    readBy: 0,
    segments: [],
    mentionsMe: false,
    typedText: null,
    ...overrides,
  };
}
