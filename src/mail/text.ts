// Small text helpers shared by mails and pages.

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => HTML_ESCAPES[char]!);
}

/**
 * A catalogue message as HTML: the message and every value escaped, `{{ name }}` filled in.
 * Messages are ours but translated by hand, so they are escaped like any other text.
 */
export function formatMessage(message: string, values: Record<string, string> = {}): string {
  return escapeHtml(message).replace(/\{\{\s*(\w+)\s*\}\}/g, (whole, name: string) =>
    name in values ? escapeHtml(values[name]!) : whole);
}

/** The same, as plain text (for subjects and headers). */
export function formatPlain(message: string, values: Record<string, string> = {}): string {
  return message.replace(/\{\{\s*(\w+)\s*\}\}/g, (whole, name: string) => (name in values ? values[name]! : whole));
}
