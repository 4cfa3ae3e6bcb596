// Unit tests for the forget-me marker: `npm test` (node's built-in test runner).
import assert from "node:assert/strict";
import { test } from "node:test";

import { clearsTranscript, confirmationOf } from "./forget.js";

test("the custom payload of the assistant's forget-me confirmation clears the transcript", () => {
  // As socket.io delivers it (channels/socketio.py) and as REST returns it.
  assert.equal(clearsTranscript({ custom: { clear_transcript: true } }), true);
  assert.equal(clearsTranscript({ recipient_id: "abc", custom: { clear_transcript: true } }), true);
});

test("nothing else clears it", () => {
  for (const message of [
    null, undefined, "clear_transcript", {}, { text: "clear_transcript: true" }, { custom: null },
    { custom: "clear_transcript" }, { custom: { clear_transcript: "true" } }, { custom: { clear_transcript: 1 } },
    { clear_transcript: true }, { custom: { data: { clear_transcript: true } } },
  ]) {
    assert.equal(clearsTranscript(message), false, JSON.stringify(message));
  }
});

test("the new conversation shows the confirmation the assistant sent just before the payload", () => {
  const messages = [
    { from: "bot", text: "Hi!", local: true },
    { from: "user", text: "please delete this chat" },
    { from: "bot", text: "Would you like me to delete this conversation?", buttons: [{ title: "Yes", payload: "/affirm" }] },
    { from: "user", text: "Yes, delete it" },
    { from: "bot", text: "Done: I've deleted this conversation." },
  ];
  assert.deepEqual(confirmationOf(messages), { from: "bot", text: "Done: I've deleted this conversation." });
});

test("no confirmation is carried over when the last message is not the assistant's reply", () => {
  assert.equal(confirmationOf([{ from: "user", text: "Yes, delete it" }]), null);
  assert.equal(confirmationOf([{ from: "bot", text: "Hi!", local: true }]), null); // the widget's own greeting
  assert.equal(confirmationOf([]), null);
});
