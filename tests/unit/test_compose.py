"""docker-compose.yml is checked, not run (no Docker engine here): pins, settings, files."""

from pathlib import Path
from typing import Any

import yaml

from expmon.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_every_image_is_pinned() -> None:
    for name, service in compose()["services"].items():
        image = service.get("image", "")
        assert ":" in image and not image.endswith(":latest"), name


def test_every_expmon_variable_is_a_setting() -> None:
    known = {f"EXPMON_{name.upper()}" for name in Settings.model_fields}
    seen = set()
    for service in compose()["services"].values():
        env = service.get("environment") or {}
        for key, value in env.items():
            if key.startswith("EXPMON_"):
                seen.add(key)
                assert key in known, key
                # the value must also be valid for that setting
                Settings.from_env(**{key.removeprefix("EXPMON_").lower(): value})
    assert "EXPMON_KAFKA_BOOTSTRAP" in seen


def test_built_image_and_named_volumes_exist() -> None:
    data = compose()
    assert (ROOT / "Dockerfile").is_file()
    for service in data["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in data["volumes"], source


def test_workers_are_scaled_and_topics_come_first() -> None:
    services = compose()["services"]
    assert services["worker"]["deploy"]["replicas"] == 2
    depends = services["worker"]["depends_on"]["topics"]
    assert depends["condition"] == "service_completed_successfully"
