// Safe Markdown for bot messages: everything is escaped first, then a small subset is allowed.
// **bold**, *italic* / _italic_, [text](url) and bare URLs (http, https, mailto, tel only),
// "- " / "* " bullet lists, and line breaks. Never raw HTML from the server.

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// Checked on the escaped text: escaping leaves these schemes unchanged, and a URL can never
// carry a quote or an angle bracket into the attribute.
const SAFE_URL = /^(https?:\/\/[^\s]+|mailto:[^\s]+|tel:[+0-9()\-.\s]+)$/i;

function link(url, label) {
  if (!SAFE_URL.test(url)) return null;
  const external = /^https?:/i.test(url);
  const attrs = external ? ' target="_blank" rel="noopener noreferrer"' : "";
  return `<a href="${url}"${attrs}>${label}</a>`;
}

// Bold and italics; links were already swapped for placeholders.
function emphasis(text) {
  return text
    .replace(/\*\*(?=\S)(.+?)(?<=\S)\*\*/g, "<strong>$1</strong>")
    .replace(/(^|[^*\w])\*(?=\S)([^*]+?)(?<=\S)\*(?![*\w])/g, "$1<em>$2</em>")
    .replace(/(^|[^_\w])_(?=\S)([^_]+?)(?<=\S)_(?![_\w])/g, "$1<em>$2</em>");
}

function inline(escaped) {
  const links = [];
  const keep = (html) => `\u0000${links.push(html) - 1}\u0000`;
  let text = escaped.replace(/\[([^\]\n]+)\]\(([^)\s]+)\)/g, (whole, label, url) => {
    const html = link(url, emphasis(label));
    return html === null ? whole : keep(html);
  });
  text = text.replace(/\bhttps?:\/\/[^\s<\u0000]*[^\s<\u0000.,;:!?)]/gi, (url) => keep(link(url, url)));
  text = emphasis(text);
  return text.replace(/\u0000(\d+)\u0000/g, (_, i) => links[Number(i)]);
}

const BULLET = /^\s*[-*\u2022]\s+(.*)$/;

/** Markdown-ish text -> HTML string that contains only p, br, ul, li, strong, em and a. */
export function renderMarkdown(text) {
  const lines = escapeHtml(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  const blocks = [];
  let paragraph = [];
  let list = [];
  const flushParagraph = () => {
    if (paragraph.length) blocks.push(`<p>${paragraph.map(inline).join("<br>")}</p>`);
    paragraph = [];
  };
  const flushList = () => {
    if (list.length) blocks.push(`<ul>${list.map((item) => `<li>${inline(item)}</li>`).join("")}</ul>`);
    list = [];
  };
  for (const line of lines) {
    const bullet = BULLET.exec(line);
    if (bullet) {
      flushParagraph();
      list.push(bullet[1]);
    } else if (line.trim() === "") {
      flushParagraph();
      flushList();
    } else {
      flushList();
      paragraph.push(line.trim());
    }
  }
  flushParagraph();
  flushList();
  return blocks.join("");
}
