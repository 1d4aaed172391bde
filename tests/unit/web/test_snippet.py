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
