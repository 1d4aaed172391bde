"""Alert rules: YAML files validated against a schema, with every problem's file and line.

The defaults live in `alerts/defaults.yml`. Operators add files (`EXPMON_RULES_FILES`,
`--rules`): a rule whose `alert` name already exists overrides the given keys of the
earlier one (`threshold: 0.05` alone changes only the threshold; `enabled: false`
switches it off), and a new name adds a rule. No code changes needed for either.
"""

from __future__ import annotations

import difflib
import importlib.resources
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from expmon.alerting.signals import Signal
from expmon.alerting.stats import Method
from expmon.errors import ExpmonError
from expmon.settings import parse_duration_seconds

Severity = Literal["info", "warning", "critical"]
DEFAULT_VIEWS = ("1m", "5m", "15m", "1h")
# Where relative `runbook_url`s (`docs/runbooks.md#x`) point: the project's repository.
# Set EXPMON_RUNBOOK_BASE_URL to your own copy (Git host, wiki) so the links open there.
DEFAULT_RUNBOOK_BASE_URL = "https://github.com/expmon/expmon/blob/main/"
TEMPLATE_FIELDS = frozenset(
    {"alertname", "severity", "value", "threshold", "window", "volume", "labels", "signal"}
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class RuleProblem:
    """One problem, shown as one line `file:line[:column]: message`; `excerpt` (the source
    line with a caret under the column) is shown under it where the position is exact."""

    file: str
    line: int
    message: str
    column: int | None = None  # 1-based
    excerpt: tuple[str, ...] = ()

    def __str__(self) -> str:
        col = f":{self.column}" if self.column is not None else ""
        line = f":{self.line}" if self.line else ""
        return f"{self.file}{line}{col}: {self.message}"

    def render(self) -> str:
        return "\n".join([str(self), *(f"    {x}" for x in self.excerpt)])


class RulesError(ExpmonError):
    """Rule files failed validation; `problems` lists each with its file and line."""

    def __init__(self, problems: Sequence[RuleProblem]) -> None:
        self.problems = list(problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in alert rules:\n"
            + "\n".join(f"  {p.render()}" for p in self.problems)
        )


class RuleSpec(BaseModel):
    """One rule as written in YAML."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    alert: str
    signal: str
    window: str | None = None
    op: Literal[">", "<"] = ">"
    threshold: float
    critical_threshold: float | None = None
    min_volume: float = Field(0, ge=0)
    for_: str = Field("0s", alias="for")
    keep_firing_for: str = "0s"
    severity: Severity = "warning"
    by: list[str] = Field(default_factory=list)
    where: dict[str, str] = Field(default_factory=dict)
    baseline: str | None = None
    baseline_min_volume: float = Field(0, ge=0)
    labels: dict[str, str] = Field(default_factory=dict)
    summary: str | None = None
    description: str | None = None
    runbook_url: str = ""
    # Ratio rules: fire only when the interval's bound is past the threshold (see stats);
    # unset: wilson for ratio signals, none otherwise.
    significance: Method | None = None
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    enabled: bool = True


@dataclass(frozen=True)
class Rule:
    """One evaluable level of a rule (a rule with `critical_threshold` yields two)."""

    alert: str
    severity: Severity
    signal: Signal
    window: str | None
    op: Literal[">", "<"]
    threshold: float
    min_volume: float
    for_ms: int
    keep_firing_for_ms: int
    by: tuple[str, ...]
    match: Mapping[str, str]  # row filters: the signal's fixed values overridden by `where`
    baseline_ms: int | None
    baseline_min_volume: float
    labels: Mapping[str, str]
    summary: str
    description: str
    runbook_url: str
    origin: str = ""  # file:line, for messages
    significance: Method = "none"
    confidence: float = 0.95

    @property
    def id(self) -> str:
        return f"{self.alert}:{self.severity}"

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.op == ">" else value < self.threshold


@dataclass
class _Source:
    """A rule's merged raw keys and where each key was last written."""

    raw: dict[str, Any]
    lines: dict[str, tuple[str, int]] = field(default_factory=dict)
    start: tuple[str, int] = ("", 0)

    def where(self, key: str | None) -> tuple[str, int]:
        if key is not None and key in self.lines:
            return self.lines[key]
        return self.start


def default_rules_text() -> str:
    return importlib.resources.files("alerts").joinpath("defaults.yml").read_text("utf-8")


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """`; did you mean 'x'?` for the closest known spelling, or nothing."""
    close = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _yaml_problem(name: str, text: str, exc: yaml.YAMLError) -> RuleProblem:
    """A parser error as the file, line and column, its reason, and a caret under it."""
    lines = text.splitlines()
    mark = getattr(exc, "problem_mark", None)
    if mark is None or mark.line >= len(lines):  # at the end of the text: show where it began
        mark = getattr(exc, "context_mark", None) or mark
    reason = " ".join(
        str(part) for part in (getattr(exc, "problem", None), getattr(exc, "context", None)) if part
    )
    reason = reason or str(exc).splitlines()[0]
    if mark is None:
        return RuleProblem(name, 1, f"not valid YAML: {reason}")
    excerpt: tuple[str, ...] = ()
    if mark.line < len(lines):
        source = lines[mark.line].replace("\t", " ")
        excerpt = (source, " " * mark.column + "^")
    return RuleProblem(name, mark.line + 1, f"not valid YAML: {reason}", mark.column + 1, excerpt)


def _rule_nodes(text: str, name: str, problems: list[RuleProblem]) -> list[yaml.MappingNode]:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        problems.append(_yaml_problem(name, text, exc))
        return []
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        problems.append(RuleProblem(name, root.start_mark.line + 1, "expected a mapping `rules:`"))
        return []
    nodes: list[yaml.MappingNode] = []
    for key, value in root.value:
        if key.value != "rules":
            message = f"unknown top-level key {key.value!r}{did_you_mean(key.value, ['rules'])}"
            problems.append(RuleProblem(name, key.start_mark.line + 1, message))
            continue
        if not isinstance(value, yaml.SequenceNode):
            problems.append(RuleProblem(name, value.start_mark.line + 1, "`rules` is not a list"))
            continue
        for item in value.value:
            if isinstance(item, yaml.MappingNode):
                nodes.append(item)
            else:
                problems.append(
                    RuleProblem(name, item.start_mark.line + 1, "a rule must be a mapping")
                )
    return nodes


def _collect(texts: Iterable[tuple[str, str]], problems: list[RuleProblem]) -> list[_Source]:
    sources: dict[str, _Source] = {}
    order: list[str] = []
    loader = yaml.SafeLoader
    for name, text in texts:
        for node in _rule_nodes(text, name, problems):
            mapping = loader(text).construct_mapping(node, deep=True)
            raw: dict[str, Any] = {str(k): v for k, v in mapping.items()}
            lines: dict[str, tuple[str, int]] = {
                str(k.value): (name, k.start_mark.line + 1) for k, _ in node.value
            }
            start = (name, node.start_mark.line + 1)
            alert = raw.get("alert")
            if not isinstance(alert, str) or not _NAME.match(alert):
                file, line = lines.get("alert", start)
                problems.append(RuleProblem(file, line, f"bad or missing `alert`: {alert!r}"))
                continue
            if alert in sources:
                source = sources[alert]
                source.raw.update(raw)
                source.lines.update(lines)
            else:
                sources[alert] = _Source(raw, lines, start)
                order.append(alert)
    return [sources[a] for a in order]


def _duration_ms(value: str, key: str, errors: list[tuple[str | None, str]]) -> int:
    try:
        return parse_duration_seconds(value) * 1000
    except ValueError as exc:
        errors.append((key, str(exc)))
        return 0


def _check_template(text: str, key: str, errors: list[tuple[str | None, str]]) -> None:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as exc:
        errors.append((key, f"bad template: {exc}"))
        return
    unknown = {n.split(".")[0].split("[")[0] for n in names} - TEMPLATE_FIELDS - {""}
    if unknown:
        errors.append(
            (key, f"unknown template field(s) {sorted(unknown)}; use {sorted(TEMPLATE_FIELDS)}")
        )


def _semantic(
    spec: RuleSpec, views: Sequence[str], signals: Mapping[str, Signal]
) -> list[tuple[str | None, str]]:
    errors: list[tuple[str | None, str]] = []
    signal = signals.get(spec.signal)
    if signal is None:
        hint = did_you_mean(spec.signal, signals) or f"; known: {sorted(signals)}"
        errors.append(("signal", f"unknown signal {spec.signal!r}{hint}"))
        return errors
    if signal.source == "window":
        if spec.window is None:
            errors.append((None, f"signal {signal.name} needs a `window` (one of {list(views)})"))
        elif spec.window not in views:
            errors.append(("window", f"window {spec.window!r} is not a view: {list(views)}"))
    elif spec.window is not None and not signal.needs_window:
        errors.append(("window", f"signal {signal.name} has no window"))
    elif spec.window is not None:
        _duration_ms(spec.window, "window", errors)
    unknown = [b for b in spec.by if b not in signal.labels]
    if unknown:
        errors.append(("by", f"{unknown} not labels of {signal.name}: {list(signal.labels)}"))
    if signal.source == "window" and not signal.additive and set(spec.by) != set(signal.labels):
        errors.append(("by", f"{signal.name} is per {list(signal.labels)}: `by` must list them"))
    settable = set(signal.labels) | set(signal.fixed)
    bad_where = [k for k in spec.where if k not in settable or k in spec.by]
    if bad_where:
        errors.append(("where", f"{bad_where}: `where` takes labels of the signal not in `by`"))
    if spec.baseline is not None:
        if signal.source != "window" or not signal.additive:
            errors.append(("baseline", f"signal {signal.name} cannot have a baseline"))
        _duration_ms(spec.baseline, "baseline", errors)
    _duration_ms(spec.for_, "for", errors)
    _duration_ms(spec.keep_firing_for, "keep_firing_for", errors)
    if spec.critical_threshold is not None and spec.severity == "critical":
        errors.append(("critical_threshold", "severity is already critical"))
    errors.extend(_domain(spec, signal))
    if spec.significance not in (None, "none") and signal.unit != "ratio":
        errors.append(
            ("significance", f"{signal.name} is in {signal.unit}, not a ratio of counts: "
             "significance applies to ratio signals only")
        )  # fmt: skip
    for key in ("summary", "description"):
        text = getattr(spec, key)
        if text is not None:
            _check_template(text, key, errors)
    for name in spec.labels:
        if not _NAME.match(name) or name in {"alertname", "severity", *signal.labels}:
            errors.append(("labels", f"label name {name!r} is invalid or reserved"))
    return errors


def _domain(spec: RuleSpec, signal: Signal) -> list[tuple[str | None, str]]:
    """Thresholds inside what the signal can be, and a critical level stricter than the
    first one: a rule outside these can only always fire or never fire."""
    errors: list[tuple[str | None, str]] = []
    unit = "ratio" if spec.baseline is not None else signal.unit
    levels = [("threshold", spec.threshold)]
    if spec.critical_threshold is not None:
        levels.append(("critical_threshold", spec.critical_threshold))
    for key, value in levels:
        if unit == "ratio" and not 0.0 <= value <= 1.0:
            errors.append((key, f"{key} {value:g} is outside a ratio's range [0, 1]"))
        elif unit in ("seconds", "count") and value < 0:
            errors.append((key, f"{key} {value:g} is negative; {signal.name} is >= 0 {unit}"))
        elif unit == "ratio" and (spec.op, value) in ((">", 1.0), ("<", 0.0)):
            errors.append((key, f"{key} {value:g} with op {spec.op!r} can never fire"))
        elif spec.op == "<" and unit != "ratio" and value == 0:
            errors.append((key, f"{key} 0 with op '<' can never fire ({signal.name} is >= 0)"))
    if spec.critical_threshold is not None:
        t, c = spec.threshold, spec.critical_threshold
        if (spec.op == ">" and c <= t) or (spec.op == "<" and c >= t):
            stricter = "above" if spec.op == ">" else "below"
            errors.append(
                (
                    "critical_threshold",
                    f"critical_threshold {c:g} must be {stricter} the {spec.severity} "
                    f"threshold {t:g} (op {spec.op!r}): critical is the stricter level",
                )
            )
    return errors


def default_summary(signal: Signal, op: str) -> str:
    return "{signal} {value} " + op + " {threshold} over {window} for {labels}"


def default_significance(signal: Signal) -> Method:
    """Ratio signals are counts (failures of attempts, bounces of sessions...): judged by
    the Wilson interval unless a rule says otherwise."""
    return "wilson" if signal.unit == "ratio" else "none"


def absolute_url(url: str, base: str) -> str:
    """A rule's `runbook_url` as a link that opens from Alertmanager, Slack or PagerDuty:
    absolute URLs stay, relative ones are resolved against `base`."""
    if not url or urlsplit(url).scheme:
        return url
    return urljoin(base if base.endswith("/") else base + "/", url)


def _compile(spec: RuleSpec, origin: str, signal: Signal, runbook_base_url: str) -> list[Rule]:
    by = tuple(spec.by)
    match = {k: v for k, v in signal.fixed.items() if k not in by}
    match.update(spec.where)
    levels: list[tuple[Severity, float]] = [(spec.severity, spec.threshold)]
    if spec.critical_threshold is not None:
        levels.append(("critical", spec.critical_threshold))
    return [
        Rule(
            alert=spec.alert,
            severity=severity,
            signal=signal,
            window=spec.window,
            op=spec.op,
            threshold=threshold,
            min_volume=spec.min_volume,
            for_ms=parse_duration_seconds(spec.for_) * 1000,
            keep_firing_for_ms=parse_duration_seconds(spec.keep_firing_for) * 1000,
            by=by,
            match=match,
            baseline_ms=parse_duration_seconds(spec.baseline) * 1000 if spec.baseline else None,
            baseline_min_volume=spec.baseline_min_volume,
            labels=dict(spec.labels),
            summary=spec.summary or default_summary(signal, spec.op),
            description=spec.description or signal.description,
            runbook_url=absolute_url(spec.runbook_url, runbook_base_url),
            origin=origin,
            significance=spec.significance or default_significance(signal),
            confidence=spec.confidence,
        )
        for severity, threshold in levels
    ]


RULE_KEYS = tuple(f.alias or name for name, f in RuleSpec.model_fields.items())


def _validate(source: _Source) -> tuple[RuleSpec | None, list[RuleProblem]]:
    """The rule's spec and its schema problems. With problems, the spec is the rule
    without its bad keys (if that validates), so that the meaning of the rest is still
    checked and one bad key hides nothing else."""
    try:
        return RuleSpec.model_validate(source.raw), []
    except ValidationError as exc:
        errors = exc.errors()
    problems = []
    bad: set[str] = set()
    alert = source.raw.get("alert")
    for err in errors:
        key = str(err["loc"][0]) if err["loc"] else None
        key = "for" if key == "for_" else key
        if key is not None:
            bad.add(key)
        if err["type"] == "extra_forbidden" and key is not None:
            message = f"unknown key {key!r}{did_you_mean(key, RULE_KEYS)}"
        else:
            where = f" ({'.'.join(map(str, err['loc']))})" if err["loc"] else ""
            message = f"{err['msg']}{where}"
        problems.append(RuleProblem(*source.where(key), f"{alert}: {message}"))
    try:
        rest = RuleSpec.model_validate({k: v for k, v in source.raw.items() if k not in bad})
    except ValidationError:
        return None, problems
    return rest, problems


def parse_rules(
    texts: Iterable[tuple[str, str]],
    views: Sequence[str] = DEFAULT_VIEWS,
    *,
    signals: Mapping[str, Signal],
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL,
) -> list[Rule]:
    """(name, YAML text) pairs, later ones overriding earlier ones -> compiled rules.

    `signals`: what rules may read, by name (`expmon.families.registry.SIGNALS`: every
    family's window signals and the pipeline's)."""
    problems: list[RuleProblem] = []
    rules: list[Rule] = []
    texts = list(texts)
    for source in _collect(texts, problems):
        spec, schema = _validate(source)
        problems.extend(schema)
        if spec is None:
            continue
        semantic = _semantic(spec, views, signals)
        for key, message in semantic:
            problems.append(RuleProblem(*source.where(key), f"{spec.alert}: {message}"))
        if not schema and not semantic and spec.enabled:
            origin = "{}:{}".format(*source.start)
            rules.extend(_compile(spec, origin, signals[spec.signal], runbook_base_url))
    if problems:
        order = {name: i for i, (name, _) in enumerate(texts)}
        problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
        raise RulesError(problems)
    return rules


def load_rules(
    extra_files: Sequence[Path] = (),
    views: Sequence[str] = DEFAULT_VIEWS,
    *,
    signals: Mapping[str, Signal],
    runbook_base_url: str = DEFAULT_RUNBOOK_BASE_URL,
) -> list[Rule]:
    """The built-in defaults, then each extra file on top."""
    texts = [("alerts/defaults.yml", default_rules_text())]
    problems: list[RuleProblem] = []
    for path in extra_files:
        try:
            texts.append((str(path), path.read_text("utf-8")))
        except OSError as exc:
            problems.append(RuleProblem(str(path), 0, f"cannot read: {exc.strerror}"))
    if problems:
        raise RulesError(problems)
    return parse_rules(texts, views, signals=signals, runbook_base_url=runbook_base_url)
