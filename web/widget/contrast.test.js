import assert from "node:assert/strict";
import { test } from "node:test";

import { contrastRatio, readableOn } from "./contrast.js";

test("dark colours get white text, light colours get near-black text", () => {
  assert.equal(readableOn("#0b5c6b"), "#ffffff");
  assert.equal(readableOn("#000080"), "#ffffff");
  assert.equal(readableOn("#ffd54f"), "#111111");
  assert.equal(readableOn("#e0f2f1"), "#111111");
});

test("the chosen text colour meets WCAG AA (4.5:1) on the default and demo colours", () => {
  for (const colour of ["#0b5c6b", "#2f4b7c", "#7a3e65", "#ffd54f"]) {
    assert.ok(contrastRatio(colour, readableOn(colour)) >= 4.5, colour);
  }
});

test("anything but #rrggbb falls back to white", () => {
  assert.equal(readableOn("teal"), "#ffffff");
  assert.equal(readableOn(""), "#ffffff");
});
