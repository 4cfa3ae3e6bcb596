// The clinic website's chat widget: one <script> tag, configured by its data- attributes.
//
//   <script src="/widget/clinic-chat.js" defer
//           data-server-url="https://assistant.example-clinic.test"
//           data-clinic-name="Example Ketamine Clinic" data-clinic-phone="(555) 010-0100"
//           data-primary-color="#0b5c6b" data-greeting="Hi! Ask me about ketamine therapy."
//           data-greeting-es="¡Hola! Pregúntenos sobre la terapia con ketamina."></script>
//
// Its own words (strings.js) follow the page's language (<html lang="es">), or data-language;
// data-greeting-es and data-launcher-label-es are the clinic's own Spanish words.
//
// It talks to Rasa's socket.io channel (session_persistence on) with socket.io-client 4, which
// speaks Engine.IO 4 / Socket.IO 5 like Rasa 3.6's python-socketio 5 server. The session id
// and the transcript are kept in sessionStorage: a reload or another page of the same site in
// the same tab continues the conversation with its history, and closing the tab forgets it.
// With data-remember="local" the clinic opts in to localStorage instead: the conversation
// outlives the tab (until Rasa's session expires) and the site's tabs share it. "Start over"
// wipes both, and so does the assistant's reply once it has deleted the conversation at the
// visitor's request (forget.js). Nothing is loaded from anywhere but the widget's own server
// and the assistant's.
import { io } from "socket.io-client";

import { readableOn } from "./contrast.js";
import { clearsTranscript, confirmationOf } from "./forget.js";
import { renderMarkdown } from "./markdown.js";
import { STRINGS, widgetLanguage } from "./strings.js";

const DEFAULTS = {
  serverUrl: "http://localhost:5005",
  socketPath: "/socket.io/",
  clinicName: "our clinic",
  clinicPhone: "",
  primaryColor: "#0b5c6b",
  textOnPrimary: "", // default: black or white, whichever reads better on primaryColor
  language: "", // default: the page's <html lang>
  greeting: "", // default: the widget's own, in the widget's language
  greetingEs: "",
  title: "",
  launcherLabel: "",
  launcherLabelEs: "",
  historyMinutes: 60, // Rasa's session_expiration_time: after that a new session (and frame) starts
  remember: "session", // "session": this tab only; "local": the browser, shared by the site's tabs
  storageKey: "",
};

const REPLY_WAIT_MS = 30000;

function readConfig(script, overrides) {
  const data = script ? script.dataset : {};
  const config = { ...DEFAULTS };
  for (const key of Object.keys(DEFAULTS)) {
    if (data[key] !== undefined && data[key] !== "") config[key] = data[key];
  }
  Object.assign(config, overrides || {});
  config.historyMinutes = Number(config.historyMinutes) || DEFAULTS.historyMinutes;
  config.title = config.title || config.clinicName;
  config.language = widgetLanguage(config.language, document.documentElement.lang);
  config.strings = STRINGS[config.language];
  // A clinic's English greeting is not shown on its Spanish pages: the widget's own Spanish one is.
  const spanish = config.language === "es";
  config.greeting = (spanish ? config.greetingEs : config.greeting) || config.strings.greeting;
  config.launcherLabel = (spanish ? config.launcherLabelEs : config.launcherLabel) || config.strings.launcherLabel;
  config.textOnPrimary = config.textOnPrimary || readableOn(config.primaryColor);
  config.storageKey = config.storageKey || `clinic-chat:${config.serverUrl}`;
  config.remember = config.remember === "local" ? "local" : "session"; // anything else: the private default
  return config;
}

function newSessionId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(path) {
  const ns = "http://www.w3.org/2000/svg";
  const icon = document.createElementNS(ns, "svg");
  icon.setAttribute("viewBox", "0 0 24 24");
  icon.setAttribute("aria-hidden", "true");
  icon.setAttribute("focusable", "false");
  const shape = document.createElementNS(ns, "path");
  shape.setAttribute("d", path);
  icon.append(shape);
  return icon;
}

const ICON_CHAT = "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z";
const ICON_CLOSE = "M6.4 5 12 10.6 17.6 5 19 6.4 13.4 12l5.6 5.6-1.4 1.4L12 13.4 6.4 19 5 17.6l5.6-5.6L5 6.4z";

/** Only the digits and + of a phone number, for a tel: link. */
function telHref(phone) {
  return `tel:${String(phone).replace(/[^0-9+]/g, "")}`;
}

/** This tab's id; kept in sessionStorage, so a reload or the next page is the same tab. */
function tabId(storageKey) {
  const key = `${storageKey}:tab`;
  try {
    const id = sessionStorage.getItem(key) || newSessionId();
    sessionStorage.setItem(key, id);
    return id;
  } catch (error) {
    return newSessionId();
  }
}

/** sessionStorage or localStorage; null where the browser blocks it. */
function storageArea(kind) {
  try {
    return kind === "local" ? window.localStorage : window.sessionStorage;
  } catch (error) {
    return null;
  }
}

/** The conversation, kept where the clinic chose (data-remember), for as long as Rasa's session. */
class Store {
  constructor(key, minutes, remember) {
    this.key = key;
    this.maxAge = minutes * 60000;
    this.shared = remember === "local"; // localStorage: every tab of the site sees it
    this.area = storageArea(remember);
    this.other = storageArea(remember === "local" ? "session" : "local");
    // A transcript in the other storage (left by an earlier set-up of the widget) is never shown:
    // health information should not linger where the clinic no longer keeps it.
    this.remove(this.other);
  }

  remove(area) {
    try {
      if (area) area.removeItem(this.key);
    } catch (error) {
      // Storage blocked: nothing was kept there.
    }
  }

  load() {
    try {
      const saved = JSON.parse(this.area.getItem(this.key) || "null");
      if (saved && saved.sessionId && Date.now() - saved.updated < this.maxAge) return saved;
      // Expired: health information should not linger on a shared computer.
      if (saved) this.remove(this.area);
    } catch (error) {
      // Storage blocked or corrupt: start a new conversation.
    }
    return null;
  }

  save(state) {
    try {
      this.area.setItem(this.key, JSON.stringify({ ...state, updated: Date.now() }));
    } catch (error) {
      // Private mode or storage full: the conversation still works, only without history.
    }
  }

  /** Forgets the conversation in both storages. */
  clear() {
    this.remove(this.area);
    this.remove(this.other);
  }
}

class ClinicChat {
  constructor(config) {
    this.config = config;
    this.store = new Store(config.storageKey, config.historyMinutes, config.remember);
    this.state = this.store.load() || this.freshState();
    this.socket = null;
    this.confirmed = false;
    this.replyTimer = null;
    this.tabId = tabId(config.storageKey);
    this.build();
    this.renderTranscript();
    if (this.state.open) this.open({ focus: false });
    // data-remember="local": another tab of the same site changed the conversation; show the same one.
    window.addEventListener("storage", (event) => {
      if (!this.store.shared || event.key !== this.config.storageKey) return;
      const saved = this.store.load();
      if (!saved) return;
      const switched = saved.sessionId !== this.state.sessionId;
      this.state = { ...saved, open: this.state.open };
      this.renderTranscript();
      if (switched && this.socket) this.reconnect();
    });
  }

  freshState() {
    return {
      sessionId: newSessionId(),
      open: false,
      messages: [{ from: "bot", text: this.config.greeting, local: true }],
    };
  }

  // --- DOM -------------------------------------------------------------------------------

  build() {
    const c = this.config;
    const t = c.strings;
    this.root = el("div", { class: "cc-root", "data-clinic-chat": "", lang: c.language });
    this.root.style.setProperty("--cc-primary", c.primaryColor);
    this.root.style.setProperty("--cc-on-primary", c.textOnPrimary);

    this.launcher = el("button", {
      type: "button", class: "cc-launcher", "aria-expanded": "false", "aria-controls": "cc-panel",
    }, [svg(ICON_CHAT), el("span", { text: c.launcherLabel })]);
    this.launcher.addEventListener("click", () => (this.isOpen() ? this.close() : this.open()));

    this.restartButton = el("button", { type: "button", class: "cc-restart", text: t.startOver });
    this.restartButton.addEventListener("click", () => this.startOver());
    this.closeButton = el("button", { type: "button", class: "cc-close", "aria-label": t.close }, [svg(ICON_CLOSE)]);
    this.closeButton.addEventListener("click", () => this.close());

    const header = el("div", { class: "cc-header" }, [
      el("div", { class: "cc-heading" }, [
        el("h2", { id: "cc-title", class: "cc-title", text: c.title }),
        el("p", { id: "cc-subtitle", class: "cc-subtitle", text: t.subtitle }),
      ]),
      this.restartButton,
      this.closeButton,
    ]);

    this.notice = el("div", { class: "cc-notice", role: "alert", hidden: true });

    // role="log" is a polite live region: screen readers announce each new message.
    this.log = el("div", {
      class: "cc-log", role: "log", "aria-live": "polite", "aria-relevant": "additions",
      "aria-label": t.conversation, tabindex: "0",
    });
    this.typing = el("div", { class: "cc-typing", hidden: true }, [
      el("span", { class: "cc-dot", "aria-hidden": "true" }),
      el("span", { class: "cc-dot", "aria-hidden": "true" }),
      el("span", { class: "cc-dot", "aria-hidden": "true" }),
      el("span", { class: "cc-sr", text: t.typing }),
    ]);

    this.input = el("textarea", {
      id: "cc-input", class: "cc-input", rows: "1", maxlength: "1000", autocomplete: "off",
      placeholder: t.placeholder,
    });
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
    this.sendButton = el("button", { type: "submit", class: "cc-send", text: t.send });
    this.form = el("form", { class: "cc-form" }, [
      el("label", { for: "cc-input", class: "cc-sr", text: t.inputLabel }),
      this.input,
      this.sendButton,
    ]);
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const text = this.input.value.trim();
      if (!text || !this.confirmed) return;
      this.input.value = "";
      this.send(text, text);
    });

    this.panel = el("section", {
      id: "cc-panel", class: "cc-panel", role: "dialog", "aria-labelledby": "cc-title cc-subtitle", hidden: true,
    }, [header, this.notice, this.log, this.typing, this.form]);
    this.panel.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        this.close();
      }
    });

    this.root.append(this.panel, this.launcher);
    document.body.append(this.root);
  }

  isOpen() {
    return !this.panel.hidden;
  }

  open({ focus = true } = {}) {
    this.panel.hidden = false;
    this.root.classList.add("cc-is-open");
    this.launcher.setAttribute("aria-expanded", "true");
    this.state.open = true;
    this.store.save(this.state);
    this.connect();
    this.scrollToEnd();
    if (focus) this.input.focus();
  }

  close() {
    this.panel.hidden = true;
    this.root.classList.remove("cc-is-open");
    this.launcher.setAttribute("aria-expanded", "false");
    this.state.open = false;
    this.store.save(this.state);
    this.launcher.focus();
  }

  scrollToEnd() {
    this.log.scrollTop = this.log.scrollHeight;
  }

  messageNode(message, isLast) {
    const t = this.config.strings;
    const bubble = el("div", { class: `cc-msg cc-${message.from}` });
    if (message.from === "bot") {
      bubble.append(el("span", { class: "cc-sr", text: t.assistantSays }));
      const body = el("div", { class: "cc-body" });
      body.innerHTML = renderMarkdown(message.text); // escaped; only p, br, ul, li, strong, em, a
      bubble.append(body);
    } else {
      bubble.append(el("span", { class: "cc-sr", text: t.youSay }), el("div", { class: "cc-body", text: message.text }));
    }
    if (isLast && message.buttons && message.buttons.length) {
      const replies = el("div", { class: "cc-replies", role: "group", "aria-label": t.suggestedReplies });
      for (const button of message.buttons) {
        const choice = el("button", { type: "button", class: "cc-reply", text: button.title });
        choice.addEventListener("click", () => {
          if (this.confirmed) this.send(button.payload, button.title);
        });
        replies.append(choice);
      }
      bubble.append(replies);
    }
    return bubble;
  }

  renderTranscript() {
    const { messages } = this.state;
    this.log.replaceChildren(...messages.map((m, i) => this.messageNode(m, i === messages.length - 1)));
    this.scrollToEnd();
  }

  append(message) {
    // Only the newest message keeps its quick replies.
    const old = this.log.querySelector(".cc-replies");
    if (old) old.remove();
    this.state.messages.push(message);
    this.store.save(this.state);
    this.log.append(this.messageNode(message, true));
    this.scrollToEnd();
  }

  setTyping(on) {
    this.typing.hidden = !on;
    clearTimeout(this.replyTimer);
    if (on) {
      this.replyTimer = setTimeout(() => {
        this.typing.hidden = true;
      }, REPLY_WAIT_MS);
    }
    this.scrollToEnd();
  }

  setConnected(connected) {
    this.confirmed = connected;
    this.sendButton.disabled = !connected;
    this.root.classList.toggle("cc-offline", !connected);
    for (const button of this.log.querySelectorAll(".cc-reply")) button.disabled = !connected;
  }

  showNotice(show) {
    if (!show) {
      this.notice.hidden = true;
      this.notice.replaceChildren();
      return;
    }
    if (!this.notice.hidden) return; // already shown: keep it stable for screen readers
    const phone = this.config.clinicPhone;
    const t = this.config.strings;
    const parts = [el("strong", { text: t.offline }), t.retrying];
    if (phone) {
      parts.push(t.callUs, el("a", { href: telHref(phone), text: phone }), t.callUsEnd);
    }
    this.notice.replaceChildren(...parts);
    this.notice.hidden = false;
    this.setTyping(false);
  }

  // --- socket.io -------------------------------------------------------------------------

  connect() {
    if (this.socket) return;
    this.setConnected(false);
    this.socket = io(this.config.serverUrl, {
      path: this.config.socketPath,
      transports: ["websocket", "polling"],
      reconnection: true,
      reconnectionDelay: 1000,
      reconnectionDelayMax: 5000,
      timeout: 8000,
    });
    this.socket.on("connect", () => {
      this.socket.emit("session_request", { session_id: this.state.sessionId });
    });
    this.socket.on("session_confirm", (sessionId) => {
      // The server may replace a malformed id; from now on both sides use its answer.
      const id = typeof sessionId === "string" ? sessionId : sessionId && sessionId.session_id;
      if (id && id !== this.state.sessionId) {
        this.state.sessionId = id;
        this.store.save(this.state);
      }
      this.showNotice(false);
      this.setConnected(true);
    });
    this.socket.on("bot_uttered", (message) => this.receive(message));
    this.socket.on("disconnect", (reason) => {
      this.setConnected(false);
      if (reason !== "io client disconnect") this.showNotice(true);
    });
    this.socket.on("connect_error", () => {
      this.setConnected(false);
      this.showNotice(true);
    });
  }

  reconnect() {
    this.socket.disconnect();
    this.socket.connect();
  }

  send(payload, shownText) {
    // Replies go to every tab in the session's room (tabs share a session only with
    // data-remember="local"). Only the tab that asked records them; the others show them from
    // localStorage (the "storage" event), so none is shown twice.
    this.state.asker = this.tabId;
    this.append({ from: "user", text: shownText });
    this.socket.emit("user_uttered", { message: payload, session_id: this.state.sessionId });
    this.setTyping(true);
  }

  receive(message) {
    if (!message || typeof message !== "object") return;
    const saved = this.store.load(); // the freshest state: another tab may have just asked
    if (saved && saved.sessionId === this.state.sessionId) {
      const changed = saved.messages.length !== this.state.messages.length;
      this.state = { ...saved, open: this.state.open };
      if (changed) this.renderTranscript();
    }
    if (this.state.asker && this.state.asker !== this.tabId) return; // that tab records the reply
    if (clearsTranscript(message)) {
      this.forgetConversation();
      return;
    }
    const quickReplies = Array.isArray(message.quick_replies) ? message.quick_replies : [];
    const buttons = (quickReplies.length ? quickReplies : Array.isArray(message.buttons) ? message.buttons : [])
      .filter((b) => b && typeof b.title === "string" && typeof b.payload === "string")
      .map((b) => ({ title: b.title, payload: b.payload }));
    const text = typeof message.text === "string" ? message.text : "";
    if (!text && !buttons.length) return; // images, other custom payloads: not used by this assistant
    this.setTyping(false);
    this.append({ from: "bot", text, buttons });
  }

  /** The assistant deleted this conversation: nothing of it stays in this browser either, and
   * a new one begins (other tabs sharing it follow through the "storage" event). */
  forgetConversation() {
    const confirmation = confirmationOf(this.state.messages);
    this.startOver();
    if (confirmation) this.append(confirmation);
  }

  startOver() {
    this.store.clear(); // both storages: nothing of the old conversation stays in this browser
    this.state = { ...this.freshState(), open: true };
    this.store.save(this.state);
    this.setTyping(false);
    this.renderTranscript();
    // A new socket: it joins only the new session's room.
    if (this.socket) this.reconnect();
    this.input.focus();
  }
}

function stylesheetFor(script) {
  if (!script || !script.src) return null;
  return new URL("clinic-chat.css", script.src).href;
}

/** Resolves once the widget's stylesheet (next to the script) has loaded, or failed to. */
function loadStylesheet(href) {
  return new Promise((resolve) => {
    if (!href || [...document.styleSheets].some((sheet) => sheet.href === href)) {
      resolve();
      return;
    }
    const link = el("link", { rel: "stylesheet", href });
    link.addEventListener("load", resolve, { once: true });
    link.addEventListener("error", resolve, { once: true });
    document.head.append(link);
  });
}

function domReady() {
  return new Promise((resolve) => {
    if (document.body && document.readyState !== "loading") resolve();
    else document.addEventListener("DOMContentLoaded", resolve, { once: true });
  });
}

function init(overrides) {
  const script = document.currentScript || document.querySelector("script[data-server-url]");
  const config = readConfig(script, overrides);
  // Built after the stylesheet has loaded: no unstyled flash, and a reopened panel can
  // scroll to the newest message.
  return Promise.all([loadStylesheet(stylesheetFor(script)), domReady()]).then(() => {
    window.ClinicChat.instance = new ClinicChat(config);
    return window.ClinicChat.instance;
  });
}

window.ClinicChat = { init, instance: null };
const current = document.currentScript;
if (current && current.dataset.autoInit !== "false") init();
