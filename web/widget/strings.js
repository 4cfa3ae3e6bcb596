// The widget's own words, in each language the assistant speaks. The page chooses: the script's
// data-language, else <html lang>, else English. The assistant's replies carry their own language.

export const STRINGS = {
  en: {
    greeting: "Hi! I can answer general questions about ketamine therapy. What would you like to know?",
    launcherLabel: "Questions? Chat with us",
    subtitle: "Virtual assistant \u00b7 not for emergencies",
    startOver: "Start over",
    close: "Close chat",
    conversation: "Conversation",
    typing: "The assistant is typing",
    placeholder: "Type your question\u2026",
    inputLabel: "Your question",
    send: "Send",
    assistantSays: "Assistant: ",
    youSay: "You: ",
    suggestedReplies: "Suggested replies",
    offline: "We can't reach the assistant right now.",
    retrying: " Trying again\u2026",
    callUs: " If you need us now, call ",
    callUsEnd: ".",
  },
  es: {
    greeting: "\u00a1Hola! Puedo responder preguntas generales sobre la terapia con ketamina. \u00bfQu\u00e9 le gustar\u00eda saber?",
    launcherLabel: "\u00bfPreguntas? Escr\u00edbanos",
    subtitle: "Asistente virtual \u00b7 no es para emergencias",
    startOver: "Empezar de nuevo",
    close: "Cerrar el chat",
    conversation: "Conversaci\u00f3n",
    typing: "El asistente est\u00e1 escribiendo",
    placeholder: "Escriba su pregunta\u2026",
    inputLabel: "Su pregunta",
    send: "Enviar",
    assistantSays: "Asistente: ",
    youSay: "Usted: ",
    suggestedReplies: "Respuestas sugeridas",
    offline: "No podemos comunicarnos con el asistente en este momento.",
    retrying: " Lo intentamos de nuevo\u2026",
    callUs: " Si nos necesita ahora, llame al ",
    callUsEnd: ".",
  },
};

/** "es" for a Spanish page ("es", "es-MX", "ES"), else "en": the language attribute the clinic
 * set on the script wins over the page's own. */
export function widgetLanguage(scriptLanguage, pageLanguage) {
  const chosen = String(scriptLanguage || pageLanguage || "").trim().toLowerCase();
  const primary = chosen.split(/[-_]/)[0];
  return Object.hasOwn(STRINGS, primary) ? primary : "en";
}
