"""Record the fixtures of tests/fixtures/faro and tests/fixtures/web-vitals from the real
npm packages in Debian's headless Chromium (run by hand after a package upgrade):

    .venv/bin/python -m tests.integration.capture_fixtures

The shop pages of the browser tests, with the Faro web SDK (web/test/faro-page.js) or the
bare `web-vitals` library (web/test/web-vitals-page.js) instead of the snippet; what they
would send is taken from the page (Faro's request bodies, the library's metric objects)
and written as JSON. Nothing is sent anywhere: the endpoint is a closed port.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from tests.integration.browser import headless_chromium
from tests.integration.shop_server import PAGES, Shop
from tests.integration.test_browser import visit

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
FIXTURES = ROOT / "tests" / "fixtures"
HOST = "http://shop.test"  # page URLs in the fixtures: the local port replaced by this


def bundle(entry: str, out: Path) -> Path:
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    subprocess.run(
        [str(esbuild), entry, "--bundle", "--format=iife", f"--outfile={out}"],
        cwd=WEB,
        check=True,
        capture_output=True,
    )
    return out


def capture(entry: str, storage_key: str, work: Path) -> tuple[list[object], str]:
    with Shop("http://127.0.0.1:9", faro_bundle=bundle(entry, work / "page.js")) as shop:
        driver = headless_chromium(work / f"profile-{storage_key}")
        try:
            for path in PAGES:
                visit(driver, shop.url + path, settle=1.5)
            driver.get(shop.url + "/done")
            raw = driver.execute_script(f"return localStorage.getItem('{storage_key}')")
        finally:
            driver.quit()
        return json.loads(raw or "[]"), shop.url


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        faro, url = capture("test/faro-page.js", "faro.test.sent", work)
        unique: list[object] = []
        for body in faro:  # the SDK retries a failed post: keep each body once
            if body not in unique:
                unique.append(body)
        out = FIXTURES / "faro"
        out.mkdir(parents=True, exist_ok=True)
        for n, body in enumerate(unique, 1):
            text = json.dumps(body, indent=2, sort_keys=True).replace(url, HOST)
            (out / f"payload-{n:02d}.json").write_text(text + "\n")
        metrics, url = capture("test/web-vitals-page.js", "web-vitals.test.sent", work)
        out = FIXTURES / "web-vitals"
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(metrics, indent=2, sort_keys=True).replace(url, HOST)
        (out / "metrics.json").write_text(text + "\n")
        print(f"{len(unique)} Faro payloads, {len(metrics)} web-vitals metrics")


if __name__ == "__main__":
    main()
