// The visitor asked the assistant to delete the conversation, and it did: its reply
// (utter_conversation_forgotten in domain.yml) carries the custom payload
// {"clear_transcript": true}. The widget then wipes its own copy the way "Start over" does and
// begins a new conversation, showing only that confirmation.

/** Whether a reply from the server says the conversation was deleted. */
export function clearsTranscript(message) {
  const custom = message && typeof message === "object" ? message.custom : null;
  return Boolean(custom && typeof custom === "object" && custom.clear_transcript === true);
}

/** The confirmation to show in the new conversation: the assistant's reply just before the
 * payload (the server sends a response's text first, then its custom payload), if it is one. */
export function confirmationOf(messages) {
  const last = messages[messages.length - 1];
  return last && last.from === "bot" && !last.local ? { from: "bot", text: last.text } : null;
}
