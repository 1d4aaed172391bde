"""The committed page snippet (web/dist/expmon-snippet.js) is the build of web/src with the
pinned packages: what the browser tests load and shops copy is what the source says."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

WEB = Path(__file__).resolve().parents[3] / "web"
ESBUILD = WEB / "node_modules" / ".bin" / "esbuild"


def build_command(outfile: Path) -> list[str]:
    """package.json's build script (split as the shell would), with the output elsewhere."""
    script = json.loads((WEB / "package.json").read_text())["scripts"]["build"]
    parts = shlex.split(script)
    assert parts[0] == "esbuild"
    args = [p for p in parts[1:] if not p.startswith("--outfile=")]
    return [str(ESBUILD), *args, f"--outfile={outfile}"]


def test_committed_bundle_is_the_build_of_the_source(tmp_path: Path) -> None:
    assert ESBUILD.exists(), "web/node_modules missing: run `make install` (npm ci in web/)"
    out = tmp_path / "expmon-snippet.js"
    subprocess.run(build_command(out), cwd=WEB, check=True, capture_output=True)
    committed = (WEB / "dist" / "expmon-snippet.js").read_bytes()
    assert out.read_bytes() == committed, "web/dist is stale: run `make snippet` and commit it"


def test_bundle_holds_the_collector_route_and_the_vitals() -> None:
    bundle = (WEB / "dist" / "expmon-snippet.js").read_text()
    assert "/v1/page-loads" in bundle
    for field in ("ttfb_ms", "fcp_ms", "lcp_ms", "inp_ms", "cls", "load_ms"):
        assert field in bundle


PATHS = [
    "/",
    "",
    "/cart",
    "/cart/",
    "/product/42",
    "/product/42/reviews",
    "/order/0b7e8c3a-2f4e-4d5b-9c1a-7e6f5d4c3b2a/track",
    "/img/5f2b9c0e1d3a4b6c7d8e",
    "/img/5f2b9c0e1d3a4b6",
    "/category/shoes-2024",
    "/a//b",
    "/v2/item/ABCDEF0123456789",
]
AGENTS = [
    ("Mozilla/5.0 (X11; Linux x86_64) Chrome/120 Safari/537.36", False),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Mobile/15E148 Safari/604.1", False),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36", False),
    ("Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) Safari/604.1", False),
    ("Mozilla/5.0 (Linux; Android 13; SM-X700) Chrome/120 Safari/537.36", False),
    ("Mozilla/5.0 (Linux; Android 14) Chrome/120", True),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120", True),  # userAgentData.mobile
]


def test_snippet_and_collector_derive_route_and_device_alike() -> None:
    """web/src/rules.js (in node) and expmon/collect/context.py on the same cases."""
    from expmon.collect.context import device_class, route_template

    script = (
        "import {routeTemplate, deviceClass} from './src/rules.js';"
        "const [paths, agents] = JSON.parse(process.argv[1]);"
        "console.log(JSON.stringify([paths.map(routeTemplate),"
        " agents.map(([ua, m]) => deviceClass(ua, m))]));"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", script, json.dumps([PATHS, AGENTS])],
        cwd=WEB, check=True, capture_output=True, text=True,
    )  # fmt: skip
    routes, devices = json.loads(done.stdout)
    assert routes == [route_template(p) or "/" for p in PATHS]
    assert devices == [device_class(ua, mobile) for ua, mobile in AGENTS]
    assert routes[4] == "/product/:id" and devices[3] == "tablet"  # the cases mean something
