import { fireEvent, render, screen } from "@testing-library/svelte";
import { describe, expect, it, vi } from "vitest";
import { searchable, segments } from "../src/lib/search";
import type { Message, SearchHit } from "../src/lib/types";
import { testMessage } from "./factories";

describe("search text", () => {
  it("needs a word of three or more characters", () => {
    expect(searchable("")).toBe(false);
    expect(searchable("mg 5 ok")).toBe(false);
    expect(searchable("5 amo")).toBe(true);
    // Characters, not UTF-16 units: one emoji is two units.
    expect(searchable("😀😀")).toBe(false);
    expect(searchable("für")).toBe(true);
  });

  it("cuts a result into plain and matched pieces", () => {
    expect(segments("Amoxicillin 500 mg; AMOX", [[0, 4], [20, 24]])).toEqual([
      { text: "Amox", match: true },
      { text: "icillin 500 mg; ", match: false },
      { text: "AMOX", match: true },
    ]);
    expect(segments("no match", [])).toEqual([{ text: "no match", match: false }]);
    // A range past the end (a text shorter than the index thought) is clipped.
    expect(segments("abc", [[1, 10]])).toEqual([
      { text: "a", match: false },
      { text: "bc", match: true },
    ]);
    expect(segments("", [[0, 3]])).toEqual([]);
  });
});

function hit(id: string, text: string, matches: [number, number][]): SearchHit {
  const message = testMessage({
    id,
    groupId: "g1",
    sender: "bob@east-ambulance",
    sentAt: new Date(2026, 10, 24, 14, 5).getTime(),
    seq: 1,
    text,
  });
  return { message, conversation: "Pharmacy", matches };
}

describe("SearchDialog", () => {
  it("searches as you type, highlights matches and opens the chosen one", async () => {
    // jsdom has no modal dialogs and does not scroll.
    Element.prototype.scrollIntoView ??= () => {};
    HTMLDialogElement.prototype.showModal ??= function (this: HTMLDialogElement) {
      this.open = true;
    };
    HTMLDialogElement.prototype.close ??= function (this: HTMLDialogElement) {
      this.open = false;
    };
    const { api } = await import("../src/lib/api");
    const search = vi
      .spyOn(api, "searchMessages")
      .mockResolvedValue([
        hit("m2", "amoxicillin given", [[0, 4]]),
        hit("m1", "Bed 4: Amoxicillin 500 mg", [[7, 11]]),
      ]);
    const onpick = vi.fn();
    const { default: SearchDialog } = await import("../src/components/SearchDialog.svelte");
    render(SearchDialog, {
      current: null,
      now: new Date(2026, 10, 24, 15, 0).getTime(),
      onpick,
      onclose: () => {},
    });
    const input = screen.getByTestId("search-input");
    await fireEvent.input(input, { target: { value: "mg" } });
    expect(screen.getByTestId("search-summary").textContent).toContain("3 or more");
    await fireEvent.input(input, { target: { value: "AMOX" } });
    await vi.waitFor(() => expect(screen.getAllByTestId("search-result")).toHaveLength(2));
    expect(search).toHaveBeenCalledTimes(1);
    expect(search).toHaveBeenCalledWith("AMOX", null);
    const marks = [...document.querySelectorAll("mark")].map((m) => m.textContent);
    expect(marks).toEqual(["amox", "Amox"]);
    expect(screen.getByTestId("search-summary").textContent).toBe("2 messages, newest first.");
    // Arrows choose; Enter opens.
    await fireEvent.keyDown(input, { key: "ArrowDown" });
    await fireEvent.keyDown(input, { key: "Enter" });
    expect(onpick).toHaveBeenCalledWith(expect.objectContaining({ message: expect.objectContaining({ id: "m1" }) }));
  });
});
