import assert from "node:assert/strict";
import { test } from "node:test";

import { STRINGS, widgetLanguage } from "./strings.js";

test("every language has every string, none empty", () => {
  const keys = Object.keys(STRINGS.en).sort();
  for (const [language, strings] of Object.entries(STRINGS)) {
    assert.deepEqual(Object.keys(strings).sort(), keys, language);
    for (const key of keys) assert.ok(strings[key].length > 0, `${language}.${key}`);
  }
});

test("the Spanish strings are not the English ones", () => {
  for (const key of Object.keys(STRINGS.en)) {
    if (key !== "callUsEnd") assert.notEqual(STRINGS.es[key], STRINGS.en[key], key);
  }
});

test("a Spanish page or script gets Spanish, in any regional form", () => {
  assert.equal(widgetLanguage("", "es"), "es");
  assert.equal(widgetLanguage(undefined, "es-MX"), "es");
  assert.equal(widgetLanguage("ES_us", "en"), "es");
});

test("the script's language wins over the page's", () => {
  assert.equal(widgetLanguage("en", "es"), "en");
  assert.equal(widgetLanguage("es", "en-US"), "es");
});

test("no language, or one the assistant does not speak, is English", () => {
  assert.equal(widgetLanguage("", ""), "en");
  assert.equal(widgetLanguage(null, undefined), "en");
  assert.equal(widgetLanguage("", "fr-CA"), "en");
  assert.equal(widgetLanguage("constructor", ""), "en");
});
