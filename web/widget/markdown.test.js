// Unit tests for the safe Markdown renderer: `npm test` (node's built-in test runner).
import assert from "node:assert/strict";
import { test } from "node:test";

import { escapeHtml, renderMarkdown } from "./markdown.js";

test("plain text is escaped and wrapped in a paragraph", () => {
  assert.equal(renderMarkdown("Fish & chips < 5 > 3"), "<p>Fish &amp; chips &lt; 5 &gt; 3</p>");
});

test("bold and italics", () => {
  assert.equal(renderMarkdown("**Call 988** now, *please*"), "<p><strong>Call 988</strong> now, <em>please</em></p>");
  assert.equal(renderMarkdown("an _important_ note"), "<p>an <em>important</em> note</p>");
});

test("snake_case words and lone asterisks stay as they are", () => {
  assert.equal(renderMarkdown("utter_faq_side and 2 * 3 * 4"), "<p>utter_faq_side and 2 * 3 * 4</p>");
});

test("single newlines are line breaks, blank lines split paragraphs", () => {
  assert.equal(renderMarkdown("one\ntwo\n\nthree"), "<p>one<br>two</p><p>three</p>");
});

test("bullet lists", () => {
  assert.equal(
    renderMarkdown("They can include:\n- Dizziness\n- **Nausea**\nAsk us."),
    "<p>They can include:</p><ul><li>Dizziness</li><li><strong>Nausea</strong></li></ul><p>Ask us.</p>",
  );
});

test("links with safe schemes, external ones open safely", () => {
  assert.equal(
    renderMarkdown("See [our site](https://example-clinic.test/faq?a=1&b=2)."),
    '<p>See <a href="https://example-clinic.test/faq?a=1&amp;b=2" target="_blank" rel="noopener noreferrer">our site</a>.</p>',
  );
  assert.equal(renderMarkdown("[Call us](tel:+1-555-010-0100)"), '<p><a href="tel:+1-555-010-0100">Call us</a></p>');
  assert.equal(renderMarkdown("[Mail](mailto:care@example.test)"), '<p><a href="mailto:care@example.test">Mail</a></p>');
});

test("bare URLs become links, trailing punctuation stays outside", () => {
  assert.equal(
    renderMarkdown("Visit https://988lifeline.org."),
    '<p>Visit <a href="https://988lifeline.org" target="_blank" rel="noopener noreferrer">https://988lifeline.org</a>.</p>',
  );
});

test("underscores and asterisks inside URLs are not emphasis", () => {
  const html = renderMarkdown("[x](https://a.test/some_path_here) and https://b.test/*star*");
  assert.match(html, /href="https:\/\/a\.test\/some_path_here"/);
  assert.match(html, /href="https:\/\/b\.test\/\*star\*"/);
  assert.doesNotMatch(html, /<em>/);
});

test("XSS: raw HTML from the server is shown as text, never as markup", () => {
  const attacks = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "<a href=\"javascript:alert(1)\">x</a>",
    "<svg/onload=alert(1)>",
    "<iframe src=//evil.test></iframe>",
  ];
  for (const attack of attacks) {
    const html = renderMarkdown(attack);
    assert.doesNotMatch(html, /<(script|img|svg|iframe|a)\b/i, attack);
    assert.equal(html, `<p>${escapeHtml(attack)}</p>`);
  }
});

test("XSS: unsafe link schemes are not linked", () => {
  for (const url of ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<b>x</b>", "vbscript:x", "//evil.test"]) {
    const html = renderMarkdown(`[click](${url})`);
    assert.doesNotMatch(html, /<a\b/, url);
  }
});

test("XSS: a quote in a URL cannot break out of the href attribute", () => {
  const html = renderMarkdown('[x](https://a.test/"onmouseover="alert(1))');
  assert.doesNotMatch(html, /"onmouseover="/);
  const bare = renderMarkdown('https://a.test/"><script>alert(1)</script>');
  assert.doesNotMatch(bare, /<script/);
});

test("XSS: markup in link text and bullets is escaped", () => {
  const html = renderMarkdown("- [<b>hi</b>](https://a.test)\n- <u>x</u>");
  assert.doesNotMatch(html, /<b>|<u>/);
  assert.match(html, /&lt;b&gt;hi&lt;\/b&gt;/);
});

test("empty and missing text", () => {
  assert.equal(renderMarkdown(""), "");
  assert.equal(renderMarkdown(undefined), "");
});
