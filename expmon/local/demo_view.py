"""What `expmon demo` shows: the worker's /metrics and /alerts turned into an incident view.

Three parts, kept apart so each can be tested without a terminal or a worker:
- data: `scrape` and `fetch_alerts` read the worker; `group_alerts` merges an alert's
  instances (one row per alert and its dimensions, the highest severity shown) and names
  the region that explains a page alert; `slow_regions` says where slow pages are;
- the live view (`LiveView`, rich): a header whose numbers say what they mean, the alert
  groups worst first, the worst pages, and the log in its own panel below, each sized to
  the terminal so that nothing is cut to `...` at 100x30;
- the plain view (`PlainView`): one line per alert change and a periodic status line, for
  a stdout that is not a terminal (`expmon demo | tee demo.log`).
"""

from __future__ import annotations

import collections
import logging
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from prometheus_client.parser import text_string_to_metric_families
from rich import box
from rich.console import Console, Group, RenderableType
from rich.layout import Layout
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schemas import codec

SLOW_SECONDS = 3.0
MIN_LOADS = 20  # a page row with fewer loads is noise, not a worst page
EXPLAIN_MIN_LOADS = 5  # enough to tell a slow region from a fast one behind an alert
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
STATE_ORDER = {"firing": 0, "pending": 1, "resolved": 2}
# Labels that say which alert it is, not where: left out of the "where" column.
NOT_WHERE = frozenset({"alertname", "severity"})
# "where" lists these first: the page before the device it was measured on
WHERE_ORDER = ("page", "device", "provider", "method", "carrier", "warehouse", "region", "topic")
# the label that names the segment of a non-page alert, most telling first
SEGMENTS = ("provider", "carrier", "warehouse", "topic", "from_step")
WIDE = 140  # columns from which the alert table also shows each alert's summary
NARROW = 100  # columns below which the tables drop their less telling columns
COMPACT = 130  # columns below which `where` shows label values without their names


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class WindowRow:
    page: str
    device: str
    region: str
    window: str
    p50: float
    p95: float
    p99: float
    slow_ratio: float
    apdex: float
    loads: float


@dataclass
class Snapshot:
    events: dict[str, float]
    rows: list[WindowRow]
    watermark_lag: float | None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    taken: float = field(default_factory=time.monotonic)


def fetch_alerts(port: int) -> list[dict[str, Any]]:
    """The alert instances the worker's engine holds (pending, firing, recently resolved)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/alerts", timeout=3) as resp:
        alerts: list[dict[str, Any]] = codec.loads(resp.read())["alerts"]
    return alerts


def parse_metrics(text: str) -> Snapshot:
    events: dict[str, float] = {}
    figures: dict[tuple[str, str, str, str], dict[str, float]] = {}
    lag: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "expmon_events_total":
                events[labels["outcome"]] = events.get(labels["outcome"], 0.0) + sample.value
            elif sample.name == "expmon_watermark_lag_seconds":
                lag = sample.value if lag is None else max(lag, sample.value)
            elif sample.name.startswith("expmon_page_load_") and "window" in labels:
                key = (labels["page"], labels["device"], labels["region"], labels["window"])
                entry = figures.setdefault(key, {})
                if sample.name == "expmon_page_load_quantile_seconds":
                    entry[f"q{labels['quantile']}"] = sample.value
                else:
                    entry[sample.name.removeprefix("expmon_page_load_")] = sample.value
    rows = [
        WindowRow(
            *key,
            p50=f.get("q0.5", 0.0),
            p95=f.get("q0.95", 0.0),
            p99=f.get("q0.99", 0.0),
            slow_ratio=f.get("slow_ratio", 0.0),
            apdex=f.get("apdex", 0.0),
            loads=f.get("window_loads", 0.0),
        )
        for key, f in figures.items()
    ]
    return Snapshot(events, rows, lag)


def scrape(port: int) -> Snapshot:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as resp:
        snapshot = parse_metrics(resp.read().decode())
    snapshot.alerts = fetch_alerts(port)
    return snapshot


def worst_rows(snapshot: Snapshot, window: str, limit: int = 12) -> list[WindowRow]:
    rows = [
        r
        for r in snapshot.rows
        if r.window == window and r.region != "all" and r.loads >= MIN_LOADS
    ]
    return sorted(rows, key=lambda r: r.p95, reverse=True)[:limit]


def slow_regions(rows: Iterable[WindowRow], threshold: float = SLOW_SECONDS) -> dict[str, int]:
    """region -> how many of its page x device rows are slow (p95 over `threshold`)."""
    out: dict[str, int] = {}
    for r in rows:
        if r.region != "all" and r.loads >= MIN_LOADS and r.p95 > threshold:
            out[r.region] = out.get(r.region, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


def explain(alert: dict[str, Any], rows: Sequence[WindowRow]) -> str:
    """The region or segment behind an alert, from the data, not from the incident spec.

    A page-load alert is raised per page and device; the per-region rows of the same page,
    device and window say whether one region or all of them are slow. Other alerts carry
    their segment (provider, carrier, warehouse...) in their labels already.
    """
    labels = alert["labels"]
    if "region" in labels:
        return f"region {labels['region']}"
    if "page" not in labels or "device" not in labels:
        segment = next((k for k in SEGMENTS if k in labels), None)
        return f"{segment} {labels[segment]}" if segment else ""
    window = alert["annotations"].get("window", "")
    mine = [
        r
        for r in rows
        if r.page == labels["page"]
        and r.device == labels["device"]
        and r.window == window
        and r.region != "all"
        and r.loads >= EXPLAIN_MIN_LOADS
    ]
    if not mine:
        return ""
    threshold = _float(alert["annotations"].get("threshold"), SLOW_SECONDS)
    slow = sorted({r.region for r in mine if r.p95 > threshold})
    if not slow:
        # slow only with the regions merged (or too few loads per region yet): no region
        # explains it alone, and naming the worst one would point on-call at a guess
        return ""
    if len(slow) == len({r.region for r in mine}):
        return "all regions"
    return "region " + ", ".join(slow)


def where_text(labels: dict[str, str], keys: bool = True) -> str:
    """`page=/cart, device=mobile`, or `/cart mobile` without the keys (narrow terminals:
    the alert's name says what its labels are)."""
    names = [k for k in labels if k not in NOT_WHERE]
    names.sort(key=lambda k: (WHERE_ORDER.index(k) if k in WHERE_ORDER else len(WHERE_ORDER), k))
    if not keys:
        return " ".join(labels[k] for k in names)
    return ", ".join(f"{k}={labels[k]}" for k in names)


def _float(text: Any, default: float | None) -> Any:
    try:
        return float(text)
    except (TypeError, ValueError):
        return default


@dataclass(frozen=True)
class AlertGroup:
    """An alert and its dimensions: its instances of every severity merged into one row."""

    alert: str
    where: str
    state: str
    severity: str
    summary: str
    explains: str
    instances: int
    value: float
    threshold: float | None = None
    place: str = ""  # `where` without the label names

    @property
    def versus(self) -> str:
        """`9.42 > 5` (value against the threshold of the level shown)."""
        if self.threshold is None:
            return f"{self.value:.3g}"
        return f"{self.value:.3g} > {self.threshold:g}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.alert, self.where)

    @property
    def excess(self) -> float:
        """How many times its threshold the value is: 6.7 s against 5 s is 1.34."""
        if not self.threshold:
            return 1.0
        return self.value / self.threshold

    @property
    def rank(self) -> tuple[int, int, float, str, str]:
        """Worst first: firing, then the highest severity, then furthest over threshold."""
        return (
            STATE_ORDER.get(self.state, 3),
            SEVERITY_ORDER.get(self.severity, 3),
            -self.excess,
            self.alert,
            self.where,
        )


def group_alerts(alerts: Iterable[dict[str, Any]], rows: Sequence[WindowRow]) -> list[AlertGroup]:
    """One row per (alert, dimensions), worst first (firing before pending, critical first).

    The row shows its most urgent instance: the most urgent state, and within it the
    highest severity (a critical and a warning level of one rule on the same page are one
    problem, said once, at its worst).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for alert in alerts:
        where = where_text(alert["labels"])
        groups[(alert["alert"], where)].append(alert)
    out = []
    for (name, where), members in groups.items():
        lead = min(
            members,
            key=lambda a: (
                STATE_ORDER.get(a["state"], 3),
                SEVERITY_ORDER.get(a["severity"], 3),
            ),
        )
        out.append(
            AlertGroup(
                alert=name,
                where=where,
                state=lead["state"],
                severity=lead["severity"],
                summary=lead["annotations"].get("summary", ""),
                explains=explain(lead, rows),
                instances=len(members),
                value=float(lead.get("value") or 0.0),
                threshold=_float(lead["annotations"].get("threshold"), None),
                place=where_text(lead["labels"], keys=False),
            )
        )
    return sorted(out, key=lambda g: g.rank)


def lag_is_abnormal(lag: float | None, lateness_s: float) -> bool:
    """The watermark trails the newest event by the allowed lateness by design; more than
    that plus half a minute of delivery means windows close late."""
    return lag is not None and lag > lateness_s + 30.0


def status_numbers(snapshot: Snapshot, previous: Snapshot | None) -> tuple[float, float | None]:
    """(accepted events, accepted events/s since the previous snapshot)."""
    accepted = snapshot.events.get("accepted", 0.0)
    if previous is None or snapshot.taken <= previous.taken:
        return accepted, None
    rate = (accepted - previous.events.get("accepted", 0.0)) / (snapshot.taken - previous.taken)
    return accepted, max(rate, 0.0)


def slow_regions_text(snapshot: Snapshot) -> str:
    regions = slow_regions(r for r in snapshot.rows if r.window == "1m")
    if not regions:
        return f"no page x device over {SLOW_SECONDS:g} s p95 in the last 1m window"
    parts = ", ".join(f"{region} ({n})" for region, n in regions.items())
    return f"slow pages (p95 > {SLOW_SECONDS:g} s, last 1m) in {parts}"


# --------------------------------------------------------------------------- logs


class DequeHandler(logging.Handler):
    """Keeps the last `maxlen` log records for the log panel: while the live view owns the
    terminal, nothing else may write to it (a log line over the view is garbled and gone at
    the next refresh)."""

    def __init__(self, maxlen: int = 200) -> None:
        super().__init__()
        self.records: collections.deque[tuple[int, str]] = collections.deque(maxlen=maxlen)
        self.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append((record.levelno, self.format(record)))
        except Exception:  # a logging handler must never raise into the caller
            self.handleError(record)

    def last(self, n: int) -> list[tuple[int, str]]:
        return list(self.records)[-n:] if n > 0 else []


# --------------------------------------------------------------------------- live view


@dataclass(frozen=True)
class Sizes:
    """Rows of each panel for a terminal `height` lines high: everything fits, nothing is
    cut by rich (which would draw `...` where a table should be)."""

    header: int
    alerts: int  # table rows (plus 3 lines: borders and the column heads)
    pages: int
    logs: int  # log lines (plus 2 border lines)

    @classmethod
    def fit(cls, height: int, alert_rows: int) -> Sizes:
        header = 4
        logs = max(3, min(8, height // 6))
        free = height - header - (logs + 2) - 3 - 3  # two tables' borders and heads
        free = max(free, 2)
        # the alerts first (what on-call acts on), but never more than 60 % of the rest,
        # so the pages that explain them stay visible
        alerts = max(1, min(max(alert_rows, 1), int(free * 0.6)))
        pages = max(1, free - alerts)
        return cls(header, alerts, pages, logs)


class LiveView:
    """The rich renderable of one refresh, for a terminal of the console's size."""

    def __init__(self, incidents: str, lateness_s: float, logs: DequeHandler) -> None:
        self.incidents = incidents
        self.lateness_s = lateness_s
        self.logs = logs
        self.started = time.monotonic()

    def render(
        self,
        snapshot: Snapshot | None,
        previous: Snapshot | None,
        width: int,
        height: int,
    ) -> RenderableType:
        groups = group_alerts(snapshot.alerts, snapshot.rows) if snapshot else []
        sizes = Sizes.fit(height, len(groups))
        layout = Layout()
        layout.split_column(
            Layout(self.header(snapshot, previous), name="header", size=sizes.header),
            Layout(
                self.alerts_panel(groups, sizes.alerts, width), name="alerts", size=sizes.alerts + 3
            ),
            Layout(self.pages_panel(snapshot, sizes.pages, width), name="pages"),
            Layout(self.logs_panel(sizes.logs), name="logs", size=sizes.logs + 2),
        )
        return layout

    def header(self, snapshot: Snapshot | None, previous: Snapshot | None) -> RenderableType:
        """Four lines: run and injection; where it hurts; events; the watermark, in words."""
        elapsed = time.monotonic() - self.started
        lines = [
            Text.assemble(
                ("expmon demo", "bold"),
                f"  t+{elapsed:.0f}s  injected: ",
                (self.incidents, "dim"),
            )
        ]
        if snapshot is None:
            lines.append(Text("waiting for the worker's first metrics..."))
        else:
            hot = bool(slow_regions(r for r in snapshot.rows if r.window == "1m"))
            lines.append(Text(slow_regions_text(snapshot), style="bold red" if hot else "green"))
            accepted, rate = status_numbers(snapshot, previous)
            ev = snapshot.events
            rate_text = f" ({rate:,.0f}/s)" if rate is not None else ""
            lines.append(
                Text(
                    f"events: {accepted:,.0f} accepted{rate_text}, {ev.get('invalid', 0):,.0f} "
                    f"invalid (to the DLQ), {ev.get('late', 0):,.0f} late, "
                    f"{ev.get('duplicate', 0):,.0f} duplicate"
                )
            )
            lines.append(self.watermark_line(snapshot.watermark_lag))
        for line in lines:
            line.no_wrap = True
            line.overflow = "ellipsis"
        return Group(*lines)

    def watermark_line(self, lag: float | None) -> Text:
        if lag is None:
            return Text("watermark: no events yet")
        if lag_is_abnormal(lag, self.lateness_s):
            return Text.assemble(
                (f"watermark lag {lag:.0f}s: windows close late", "bold red"),
                f" (normal: about the {self.lateness_s:g}s allowed lateness; is a partition "
                "stuck or the worker behind?)",
            )
        return Text(
            f"watermark lag {lag:.0f}s (normal): a window closes this long after its end, "
            f"to wait {self.lateness_s:g}s for late events"
        )

    def alerts_panel(self, groups: Sequence[AlertGroup], rows: int, width: int) -> RenderableType:
        firing = [g for g in groups if g.state == "firing"]
        critical = sum(1 for g in firing if g.severity == "critical")
        title = f"alerts: {len(firing)} firing ({critical} critical), {len(groups)} in all"
        table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
        narrow = width < NARROW
        table.add_column("status", no_wrap=True, min_width=11 if narrow else 16)
        table.add_column("alert", no_wrap=True, max_width=14 if narrow else 22)
        # `where` gives way first: the status, the alert, its region and value stay whole
        table.add_column("where", no_wrap=True, overflow="ellipsis", min_width=12, ratio=2)
        table.add_column("explained by", no_wrap=True, min_width=14, max_width=22, style="bold")
        table.add_column("value", no_wrap=True, justify="right", min_width=12)
        if width >= WIDE:
            table.add_column("summary", no_wrap=True, overflow="ellipsis", ratio=3)
        shown = list(groups[:rows])
        if len(groups) > rows:
            shown = shown[: max(rows - 1, 0)]
        for g in shown:
            style = {"firing": "bold red" if g.severity == "critical" else "red"}.get(
                g.state, "yellow" if g.state == "pending" else "dim"
            )
            severity = g.severity[:4] if narrow else g.severity
            where = g.where if width >= COMPACT else g.place
            cells = [f"{g.state} {severity}", g.alert, where, g.explains, g.versus]
            table.add_row(*cells, *([g.summary] if width >= WIDE else []), style=style)
        if len(groups) > len(shown):
            rest = groups[len(shown) :]
            rest_firing = sum(1 for g in rest if g.state == "firing")
            table.add_row("", f"... {len(rest)} more", f"({rest_firing} of them firing)")
        body: RenderableType = table
        if not groups:
            body = Text("no alert pending or firing", style="green")
        return Panel(body, title=title, title_align="left", box=box.ROUNDED, padding=(0, 0))

    def pages_panel(self, snapshot: Snapshot | None, rows: int, width: int) -> RenderableType:
        table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
        table.add_column("page", no_wrap=True, min_width=12, max_width=24)
        for column in ("device", "region"):
            table.add_column(column, no_wrap=True)
        columns = ("loads", "p50 s", "p95 s", "p99 s", "slow %", "apdex", "p95 5m")
        keep = [c not in ("p50 s", "apdex") or width >= NARROW for c in columns]
        for column, kept in zip(columns, keep, strict=True):
            if kept:
                table.add_column(column, justify="right", no_wrap=True)
        title = f"worst pages, last closed 1m window (p95 over {SLOW_SECONDS:g} s in red)"
        if snapshot is not None:
            five = {(r.page, r.device, r.region): r.p95 for r in snapshot.rows if r.window == "5m"}
            for r in worst_rows(snapshot, "1m", limit=rows):
                p95_5m = five.get((r.page, r.device, r.region))
                figures = (
                    f"{r.loads:.0f}",
                    f"{r.p50:.2f}",
                    f"{r.p95:.2f}",
                    f"{r.p99:.2f}",
                    f"{100 * r.slow_ratio:.1f}",
                    f"{r.apdex:.2f}",
                    "-" if p95_5m is None else f"{p95_5m:.2f}",
                )
                table.add_row(
                    r.page,
                    r.device,
                    r.region,
                    *(f for f, kept in zip(figures, keep, strict=True) if kept),
                    style="bold red" if r.p95 > SLOW_SECONDS else None,
                )
        body: RenderableType = table
        if not table.rows:
            body = Text(
                f"waiting for the first 1m window to close (at its end + {self.lateness_s:g}s "
                "lateness)"
            )
        return Panel(body, title=title, title_align="left", box=box.ROUNDED, padding=(0, 0))

    def logs_panel(self, lines: int) -> RenderableType:
        styles = {
            logging.WARNING: "yellow",
            logging.ERROR: "bold red",
            logging.CRITICAL: "bold red",
        }
        text = Text(no_wrap=True, overflow="ellipsis")
        for i, (level, line) in enumerate(self.logs.last(lines)):
            if i:
                text.append("\n")
            text.append(line, style=styles.get(level, ""))
        return Panel(text, title="log", title_align="left", box=box.ROUNDED, padding=(0, 0))


# --------------------------------------------------------------------------- plain view


class PlainView:
    """Line per event for a stdout that is not a terminal: alert changes as they happen,
    a new slow region, and a status line every `status_every_s`."""

    def __init__(self, out: IO[str], lateness_s: float, status_every_s: float = 15.0) -> None:
        self.out = out
        self.lateness_s = lateness_s
        self.status_every_s = status_every_s
        self.started = time.monotonic()
        self.last_status: float | None = None
        self.shown: dict[tuple[str, str], tuple[str, str]] = {}
        self.regions: set[str] = set()

    def line(self, text: str) -> None:
        self.out.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        self.out.flush()

    def update(self, snapshot: Snapshot, previous: Snapshot | None) -> None:
        for text in self.changes(snapshot):
            self.line(text)
        now = time.monotonic()
        if self.last_status is None or now - self.last_status >= self.status_every_s:
            self.last_status = now
            self.line(self.status(snapshot, previous))

    def changes(self, snapshot: Snapshot) -> list[str]:
        out = []
        groups = group_alerts(snapshot.alerts, snapshot.rows)
        for g in groups:
            seen = (g.state, g.severity)
            if self.shown.get(g.key) == seen:
                continue
            self.shown[g.key] = seen
            where = f" [{g.explains}]" if g.explains else ""
            out.append(f"alert {g.state} {g.severity} {g.alert} {g.where}{where}: {g.summary}")
        for region in slow_regions(r for r in snapshot.rows if r.window == "1m"):
            if region not in self.regions:
                self.regions.add(region)
                out.append(f"slow pages in region {region}: {slow_regions_text(snapshot)}")
        return out

    def status(self, snapshot: Snapshot, previous: Snapshot | None) -> str:
        accepted, rate = status_numbers(snapshot, previous)
        groups = group_alerts(snapshot.alerts, snapshot.rows)
        firing = [g for g in groups if g.state == "firing"]
        critical = sum(1 for g in firing if g.severity == "critical")
        lag = snapshot.watermark_lag
        lag_text = "no events yet" if lag is None else f"{lag:.0f}s"
        if lag is not None:
            lag_text += " (late!)" if lag_is_abnormal(lag, self.lateness_s) else " (normal)"
        rate_text = f" ({rate:,.0f}/s)" if rate is not None else ""
        worst = worst_rows(snapshot, "1m", limit=1)
        worst_text = (
            f"; worst 1m p95 {worst[0].p95:.2f}s {worst[0].page} {worst[0].device} "
            f"{worst[0].region}"
            if worst
            else ""
        )
        return (
            f"status t+{time.monotonic() - self.started:.0f}s: {accepted:,.0f} events"
            f"{rate_text}, {snapshot.events.get('invalid', 0):,.0f} invalid; watermark lag "
            f"{lag_text}; {len(firing)} alerts firing ({critical} critical){worst_text}"
        )


def final_summary(snapshot: Snapshot | None, console: Console) -> None:
    """After the live view: what fired, on the normal screen, so the run leaves a record."""
    if snapshot is None:
        return
    groups = [g for g in group_alerts(snapshot.alerts, snapshot.rows) if g.state != "pending"]
    console.print(f"alerts at the end of the demo: {len(groups)} (firing or resolved)")
    for g in groups:
        where = f" [{g.explains}]" if g.explains else ""
        console.print(f"  {g.state} {g.severity} {g.alert} {g.where}{where}: {g.summary}",
                      highlight=False, markup=False, soft_wrap=True)  # fmt: skip
