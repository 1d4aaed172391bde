// The real Grafana Faro web SDK on the browser tests' shop page (not shipped: a test
// bundle, built into web/build/ by `npm run build:faro-test`). It records every request
// body it sends, so a test can compare what reached Kafka with what the SDK posted.
import { getWebInstrumentations, initializeFaro } from "@grafana/faro-web-sdk";

const config = window.faroTestConfig;
const realFetch = window.fetch.bind(window);
window.fetch = (url, init) => {
  if (String(url) === config.url && init && typeof init.body === "string") {
    const key = "faro.test.sent";
    const all = JSON.parse(localStorage.getItem(key) || "[]");
    all.push(JSON.parse(init.body));
    localStorage.setItem(key, JSON.stringify(all));
  }
  return realFetch(url, init);
};

initializeFaro({
  url: config.url,
  app: { name: "test-shop", version: "1.0.0", environment: "test" },
  instrumentations: getWebInstrumentations({ captureConsole: false }),
  sessionTracking: { enabled: true, persistent: true },
});
