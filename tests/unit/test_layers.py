"""The package's layers, checked: no import cycle (streams/ included), and no module
importing from a layer above its own.

The rules are this table: each layer, the module prefixes it holds, and the layers it may
import from (its own always). A module belongs to the layer of its longest matching
prefix. Every import counts, also those inside functions and under TYPE_CHECKING: a
deferred import still ties the two modules together.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("expmon", "streams", "schemas")

# layer: (module prefixes, layers it may import from)
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "schemas": (("schemas",), ()),
    "core": (
        (
            "expmon",
            "expmon.settings",
            "expmon.errors",
            "expmon.gctune",
            "expmon.switchtune",
            "expmon.memory",
        ),
        ("schemas",),
    ),
    "truth": (("expmon.sim.truth",), ("core", "schemas")),
    "engine": (("expmon.engine",), ("core", "schemas")),
    "alerting": (("expmon.alerting",), ("core", "schemas", "engine")),
    "families": (("expmon.families",), ("core", "schemas", "engine", "alerting", "truth")),
    "exposition": (("expmon.exposition",), ("core", "engine", "families")),
    "kafka": (("expmon.kafka",), ("core", "families")),
    "sim": (("expmon.sim",), ("core", "schemas", "truth", "families", "kafka")),
    "local": (("expmon.local",), ("core", "schemas", "kafka")),
    "replay": (("expmon.replay",),
               ("core", "schemas", "engine", "alerting", "families", "exposition", "kafka")),
    "dashboards": (("expmon.dashboards",), ("core", "alerting", "families", "exposition")),
    "bench": (("expmon.bench",),
              ("core", "schemas", "engine", "alerting", "families", "exposition", "kafka",
               "sim", "local", "replay")),
    "collect": (("expmon.collect",), ("core", "schemas", "engine", "families", "kafka")),
    "streams": (("streams",),
                ("core", "schemas", "engine", "alerting", "families", "exposition", "kafka")),
    "cli": (("expmon.cli",),
            ("core", "schemas", "alerting", "families", "exposition", "kafka", "sim", "local",
             "replay", "bench", "streams", "collect")),
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules `path` imports (`from a import b` counts a.b when b is a module)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            for alias in node.names:
                # `from package import module` ties us to the module, not the package
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imports(path, name, known) for name, path in modules.items()}


def layer_of(module: str) -> str:
    best, length = "", -1
    for layer, (prefixes, _allowed) in LAYERS.items():
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            # "expmon" alone is the package's __init__; as a prefix it would hold everything
            if prefix == "expmon" and module != "expmon":
                matches = False
            if matches and len(prefix) > length:
                best, length = layer, len(prefix)
    assert best, f"{module} is in no layer of the table"
    return best


def test_every_module_has_a_layer() -> None:
    for module in project_modules():
        layer_of(module)


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    problems = []
    for module, targets in sorted(graph().items()):
        mine = layer_of(module)
        allowed = {mine, *LAYERS[mine][1]}
        for target in sorted(targets):
            if layer_of(target) not in allowed:
                problems.append(f"{module} ({mine}) imports {target} ({layer_of(target)})")
    assert problems == []


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    done: set[str] = set()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append([*path[path.index(module) :], module])
            return
        if module in done:
            return
        for target in sorted(edges[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(edges):
        visit(module, [])
    assert cycles == []


def test_the_rules_would_catch_an_upward_import() -> None:
    """The table is not vacuous: an engine module importing a family is refused."""
    assert layer_of("expmon.engine.stage") == "engine"
    assert "families" not in LAYERS["engine"][1]
    assert layer_of("expmon.families.page_load") == "families"
    assert LAYERS["schemas"][1] == ()
