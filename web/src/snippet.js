// Experience Monitor page snippet: one page-load event per page view, sent to
// `expmon collect` when the page is hidden (tab switch, navigation, close), with the
// navigation timing's load time and the Core Web Vitals the `web-vitals` library reports
// as final by then. Configure it before loading it:
//
//   <script>window.expmonConfig = {endpoint: "https://rum.shop.example", route: "/product/:id"};</script>
//   <script src="https://rum.shop.example/expmon-snippet.js" async></script>
//
// Config: endpoint (the collector's base URL; required), route (this page's route
// template; default: the path with id-like segments as `:id`, the collector's rule),
// region (default: the collector's EXPMON_COLLECT_REGION), apiKey (when the collector
// has one), appVersion, onSend (called with each event sent: for tests and debugging).
import { onCLS, onFCP, onINP, onLCP, onTTFB } from "web-vitals";

import { deviceClass, randomId, routeTemplate } from "./rules.js";

const SESSION_KEY = "expmon.session";
const SESSION_IDLE_MS = 30 * 60 * 1000; // the contract's session: 30 min without a view
const FIELDS = { TTFB: "ttfb_ms", FCP: "fcp_ms", LCP: "lcp_ms", INP: "inp_ms", CLS: "cls" };

function sessionId(now) {
  // localStorage may throw (privacy modes, sandboxed frames): then one id per page view
  try {
    const saved = JSON.parse(localStorage.getItem(SESSION_KEY) || "null");
    const id = saved && now - saved.last < SESSION_IDLE_MS ? saved.id : randomId();
    localStorage.setItem(SESSION_KEY, JSON.stringify({ id, last: now }));
    return id;
  } catch (_) {
    return randomId();
  }
}

function loadTime() {
  const nav = performance.getEntriesByType && performance.getEntriesByType("navigation")[0];
  // loadEventEnd is 0 until the load event finished: a page hidden before that has none
  return nav && nav.loadEventEnd > 0 ? Math.round(nav.loadEventEnd - nav.startTime) : undefined;
}

function start(config) {
  const endpoint = String(config.endpoint || "").replace(/\/+$/, "");
  if (!endpoint) return;
  const url =
    `${endpoint}/v1/page-loads` +
    (config.apiKey ? `?api_key=${encodeURIComponent(config.apiKey)}` : "");
  let view = null;

  function newView(startedAt) {
    view = {
      event_id: randomId(),
      schema_version: 1,
      session_id: sessionId(startedAt),
      page: config.route || routeTemplate(location.pathname),
      device: deviceClass(
        navigator.userAgent,
        navigator.userAgentData && navigator.userAgentData.mobile,
      ),
      platform: "web",
      region: config.region || "unknown",
      vitals: {},
      sent: false,
      restored: false,
    };
    if (config.appVersion) view.app_version = String(config.appVersion);
  }

  function send() {
    if (!view || view.sent) return;
    view.sent = true;
    const event = {
      event_id: view.event_id,
      // when the measurements became final (the page hid), not when the view began: a
      // view held open for minutes would otherwise reach the worker behind its
      // partition's watermark (late), while its beacon is as fresh as any other
      occurred_at: Date.now(),
      schema_version: 1,
      session_id: view.session_id,
      page: view.page,
      device: view.device,
      platform: "web",
      region: view.region,
      ...view.vitals,
    };
    if (view.app_version) event.app_version = view.app_version;
    const load = view.restored ? undefined : loadTime();
    if (load !== undefined) event.load_ms = load;
    if (load === undefined && Object.keys(view.vitals).length === 0) return; // nothing measured
    const body = JSON.stringify(event);
    // sendBeacon survives the page going away; it sends text/plain, which needs no CORS
    // preflight. fetch keepalive is the fallback when the beacon queue is full.
    let queued = false;
    try {
      queued = navigator.sendBeacon && navigator.sendBeacon(url, body);
    } catch (_) {
      queued = false;
    }
    if (!queued) {
      fetch(url, { method: "POST", body, keepalive: true, headers: { "Content-Type": "text/plain" } })
        .catch(() => {});
    }
    if (typeof config.onSend === "function") config.onSend(event);
  }

  newView(Date.now());
  const record = (metric) => {
    const field = FIELDS[metric.name];
    // as reported: ms (fractional) for the timings, unitless for CLS
    if (field && view) view.vitals[field] = metric.value;
  };
  // Every change, keeping the latest: web-vitals reports its final values in capture
  // listeners of `visibilitychange`, which run before ours below (bubble phase), but a
  // page hidden within the library's idle wait after an interaction would otherwise
  // lose its INP (the forced final report runs before the queued entries are counted).
  // The last value reported before the page hides is the metric's final value.
  const all = { reportAllChanges: true };
  onTTFB(record, all);
  onFCP(record, all);
  onLCP(record, all);
  onINP(record, all);
  onCLS(record, all);
  addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") send();
  });
  // Not on `pagehide`: it fires before `visibilitychange` when a page is left, before
  // web-vitals reported LCP, CLS and INP as final; every current browser fires
  // `visibilitychange` on navigation and on close.
  addEventListener("pageshow", (event) => {
    if (event.persisted) {
      // restored from the back/forward cache: a new page view, without a load of its own
      newView(Date.now());
      view.restored = true;
    }
  });
}

start(window.expmonConfig || {});
