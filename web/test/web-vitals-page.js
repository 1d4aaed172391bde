// The `web-vitals` library on the browser tests' shop page, recording each metric object
// as the library reports it (for tests/fixtures/web-vitals: what a beacon carries).
import { onCLS, onFCP, onINP, onLCP, onTTFB } from "web-vitals";

const record = (metric) => {
  const key = "web-vitals.test.sent";
  const all = JSON.parse(localStorage.getItem(key) || "[]");
  all.push(JSON.parse(JSON.stringify(metric)));
  localStorage.setItem(key, JSON.stringify(all));
};
onTTFB(record);
onFCP(record);
onLCP(record);
onINP(record);
onCLS(record);
