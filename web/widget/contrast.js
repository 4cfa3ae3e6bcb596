// Readable text on the clinic's chosen colour (WCAG relative luminance and contrast ratio).

export function luminance(hex) {
  const [r, g, b] = [0, 2, 4].map((i) => {
    const c = parseInt(hex.slice(i, i + 2), 16) / 255;
    return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

/** White or near-black text, whichever has the higher WCAG contrast on a #rrggbb colour. */
export function readableOn(color) {
  const match = /^#([0-9a-f]{6})$/i.exec(String(color).trim());
  if (!match) return "#ffffff";
  const l = luminance(match[1]);
  return (1.05 / (l + 0.05)) >= ((l + 0.05) / (luminance("111111") + 0.05)) ? "#ffffff" : "#111111";
}

/** WCAG contrast ratio of two #rrggbb colours. */
export function contrastRatio(a, b) {
  const [x, y] = [luminance(a.replace("#", "")), luminance(b.replace("#", ""))].sort((m, n) => n - m);
  return (x + 0.05) / (y + 0.05);
}
