// What the snippet derives on the page, by the collector's rules
// (expmon/collect/context.py; tests/unit/web/test_snippet.py runs both on the same cases).
// An id-like path segment becomes `:id`: digits, UUIDs, hex strings of 16+ characters.
const ID_SEGMENT =
  /^(?:\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,})$/i;

export function randomId() {
  if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

export function routeTemplate(path) {
  const segments = path.split("/").filter(Boolean);
  return `/${segments.map((s) => (ID_SEGMENT.test(s) ? ":id" : s)).join("/")}`;
}

export function deviceClass(ua, mobileHint) {
  if (/iPad|Tablet/.test(ua) || (/Android/.test(ua) && !/Mobile/.test(ua))) return "tablet";
  if (/Mobi/.test(ua) || mobileHint) return "mobile";
  return "desktop";
}

