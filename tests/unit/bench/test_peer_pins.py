"""The bench peers' pins: the Quix venv's requirements agree with the project's pins."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
QUIX_REQUIREMENTS = ROOT / "expmon" / "bench" / "peers" / "quix-requirements.txt"


def pins(lines: list[str]) -> dict[str, str]:
    out = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned: {raw}"
            out[name.strip().lower()] = version.strip()
    return out


def test_quix_venv_pins_agree_with_the_projects() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ours = pins([*project["dependencies"], *project["optional-dependencies"]["bench"]])
    quix = pins(QUIX_REQUIREMENTS.read_text().splitlines())
    assert quix["quixstreams"].startswith("3.")
    assert ours["bytewax"].startswith("0.21.")
    shared = set(ours) & set(quix)
    assert {"confluent-kafka", "msgspec", "orjson", "prometheus-client"} <= shared
    assert {name: quix[name] for name in shared} == {name: ours[name] for name in shared}
