"""One typed, frozen settings object, built from flags and `EXPMON_*` variables.

Build it once at the entry point (`Settings.from_env(**flag_overrides)`) and pass it
down; nothing reads the environment after that.
"""

from __future__ import annotations

import difflib
import logging
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from expmon.errors import ConfigError

log = logging.getLogger(__name__)

ENV_PREFIX = "EXPMON_"
# EXPMON_* variables that are not settings but are read on purpose elsewhere.
OTHER_ENV = frozenset({"EXPMON_SERVICES"})

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "expmon"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXPMON_", frozen=True, extra="forbid")

    # --- Kafka -------------------------------------------------------------
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated"
    )
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    app_id: str = Field("expmon", description="faust app id: consumer group and state prefix")
    kafka_session_timeout_seconds: float = Field(
        30.0, gt=0, description="a worker silent this long loses its partitions to the others"
    )
    kafka_max_poll_records: int = Field(
        30_000, ge=1, description="most records one fetch hands to the worker's stages"
    )

    # --- Topics ------------------------------------------------------------
    replication_factor: int | None = Field(
        None,
        ge=1,
        description="replicas of the topics the monitor creates, faust's changelogs included "
        "(default: 3 on a cluster of >= 3 brokers, else the broker's default)",
    )
    topic_page_loads: str = "page-loads"
    topic_checkout: str = "checkout-events"
    topic_logistics: str = "logistics-events"
    topic_alerts: str = "experience-alerts"
    topic_dlq: str = "experience-dlq"
    topic_window_partials: str = "expmon-window-partials"
    topic_windows: str = "expmon-windows"
    topic_partitions: int = Field(
        3, ge=1, description="partitions for topics `expmon topics` creates"
    )

    sim_delivery_timeout_seconds: float = Field(
        120.0,
        gt=0,
        description="simulate: re-send a record the broker did not acknowledge until this "
        "long after its first try (rides out a broker restart), then fail",
    )

    # --- Metrics endpoint --------------------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9477, ge=0, le=65535)
    metrics_basic_auth_user: str | None = Field(
        None, description="with a password: /metrics and /alerts ask for HTTP basic auth"
    )
    metrics_basic_auth_password: SecretStr | None = None
    metrics_tls_certfile: Path | None = Field(
        None, description="with a key file: the HTTP endpoints speak HTTPS"
    )
    metrics_tls_keyfile: Path | None = None
    series_budget: int = Field(
        10_000,
        ge=100,
        description="most series one /metrics page holds; past it, series are dropped in a "
        "documented order (breakdowns and the longest tail first) and counted",
    )
    metrics_max_age_seconds: float = Field(
        1.0, ge=0, description="scrapes within this of a render get its cached bytes"
    )

    # --- Windows -----------------------------------------------------------
    window_seconds: int = Field(60, ge=1)
    allowed_lateness_seconds: float = Field(30.0, ge=0)
    idle_partition_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description="live mode: a partition with nothing new on the broker this long is shown",
    )
    rolling_views: Annotated[tuple[str, ...], NoDecode] = ("5m", "15m", "1h")

    # --- Page loads --------------------------------------------------------
    slow_threshold_seconds: float = Field(3.0, gt=0)
    apdex_t_seconds: float = Field(
        2.5, gt=0, description="Apdex T: satisfied <= T, tolerating <= 4T"
    )
    max_pages: int = Field(50, ge=1, description="distinct page labels before `other`")
    # Core Web Vitals ratings (Google's thresholds): good <= first, poor > second
    # (EXPMON_LCP_THRESHOLDS_SECONDS=2.5,4 or [2.5,4])
    lcp_thresholds_seconds: Annotated[tuple[float, float], NoDecode] = (2.5, 4.0)
    inp_thresholds_seconds: Annotated[tuple[float, float], NoDecode] = (0.2, 0.5)
    cls_thresholds: Annotated[tuple[float, float], NoDecode] = (0.1, 0.25)
    fcp_thresholds_seconds: Annotated[tuple[float, float], NoDecode] = (1.8, 3.0)
    ttfb_thresholds_seconds: Annotated[tuple[float, float], NoDecode] = (0.8, 1.8)
    max_regions: int = Field(20, ge=1, description="distinct region labels before `other`")

    # --- Journeys (event-time timeouts) ------------------------------------
    checkout_abandon_seconds: float = Field(
        1800.0, gt=0, description="a checkout without progress this long is abandoned"
    )
    bounce_seconds: float = Field(
        1800.0, gt=0, description="a session with one page view and nothing else this long bounced"
    )
    ship_sla_seconds: float = Field(
        172_800.0, gt=0, description="ship within this after order_placed"
    )
    tracking_stale_seconds: float = Field(
        86_400.0, gt=0, description="an in-transit order without an update this long is stale"
    )
    order_expiry_seconds: float = Field(
        30 * 86_400.0, gt=0, description="an order without events this long leaves state"
    )
    max_label_values: int = Field(
        50, ge=1, description="distinct values of other labels (carrier...) before `other`"
    )

    # --- Alerting ----------------------------------------------------------
    rules_files: Annotated[tuple[Path, ...], NoDecode] = Field(
        (), description="alert rule files applied on top of alerts/defaults.yml, in order"
    )
    alertmanager_url: str = Field(
        "", description="Alertmanager base URLs, comma separated (HA: each gets every alert)"
    )
    alert_resend_seconds: float = Field(
        30.0, gt=0, description="re-send firing alerts to Alertmanager this often"
    )
    alert_expiry_seconds: float = Field(
        180.0,
        gt=0,
        description="endsAt of firing alerts this far ahead: Alertmanager resolves an alert by "
        "itself if no worker re-sends it for this long (outlives a worker restart)",
    )
    external_url: str = Field(
        "", description="base of alert generatorURLs (default: the worker's metrics address)"
    )
    runbook_base_url: str = Field(
        "https://github.com/expmon/expmon/blob/main/",
        description="relative runbook_urls of alert rules (docs/runbooks.md#...) resolve "
        "against this: point it at your copy of the repository or wiki",
    )
    telemetry_interval_seconds: float = Field(
        2.0, gt=0, description="how often workers report pipeline telemetry to the alert engine"
    )

    # --- Ingestion limits --------------------------------------------------
    max_record_bytes: int = Field(1_000_000, ge=1024)
    max_events_per_record: int = Field(10_000, ge=1)
    max_future_seconds: float = Field(
        86_400.0, ge=0, description="event time this far past the wall clock is absurd"
    )
    max_clock_skew_seconds: float = Field(
        600.0,
        ge=0,
        description="event time this far ahead of its record's broker timestamp is clock_skew",
    )
    correction_horizon_seconds: float = Field(
        3600.0,
        ge=0,
        description="event time a window shown early stays correctable; then it is sealed",
    )

    # --- Collector (`expmon collect`) ---------------------------------------
    collect_host: str = "127.0.0.1"
    collect_port: int = Field(9478, ge=0, le=65535)
    collect_allowed_origins: str = Field(
        "",
        description="origins whose pages may post beacons (CORS), comma separated; `*` allows "
        "any; empty (the default) allows no cross-origin browser request",
    )
    collect_api_key: SecretStr | None = Field(
        None, description="when set, every POST needs it (X-API-Key header or ?api_key=)"
    )
    collect_max_body_bytes: int = Field(
        1_000_000, ge=1024, description="largest request body, before and after gzip (413)"
    )
    collect_rate_per_second: float = Field(
        50.0, gt=0, description="requests per second each client may sustain (429 above)"
    )
    collect_rate_burst: int = Field(200, ge=1, description="requests a client may burst")
    collect_client_ip_header: str = Field(
        "",
        description="header naming the client behind a load balancer (X-Forwarded-For: its "
        "first address); empty: the peer address",
    )
    collect_store_client_info: bool = Field(
        False, description="add the client's IP and user agent to events (off: never stored)"
    )
    collect_region: str = Field(
        "unknown", description="region of events mapped from beacons, which carry none"
    )
    collect_idempotency_ids: int = Field(
        100_000, ge=1, description="recent event ids remembered per family to drop repeats"
    )
    collect_produce_timeout_seconds: float = Field(
        10.0, gt=0, description="longest wait for the broker's ack before answering 503"
    )
    collect_shutdown_timeout_seconds: float = Field(
        10.0, gt=0, description="on SIGTERM/Ctrl-C, how long in-flight requests may finish"
    )

    # --- Processing --------------------------------------------------------
    # Each stage batch writes its checkpoint (the changed parts of the open windows) and
    # waits for it: at 5000 single-event records that was a third of the worker's time.
    batch_max_records: int = Field(30_000, ge=1)
    batch_within_seconds: float = Field(
        0.25, gt=0, description="longest wait to fill a batch (adds at most this to latency)"
    )
    state_dir: Path = Field(default_factory=lambda: default_cache_dir() / "state")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator(
        "rolling_views",
        "rules_files",
        "lcp_thresholds_seconds",
        "inp_thresholds_seconds",
        "cls_thresholds",
        "fcp_thresholds_seconds",
        "ttfb_thresholds_seconds",
        mode="before",
    )
    @classmethod
    def _list_from_text(cls, value: Any) -> Any:
        """A list variable as a JSON list (`["a.yml","b.yml"]`) or comma separated (`a,b`)."""
        return split_list(value) if isinstance(value, str) else value

    @field_validator("alertmanager_url", "external_url")
    @classmethod
    def _urls_parse(cls, value: str) -> str:
        for url in split_list(value):
            check_http_url(url)
        return value

    @field_validator("rolling_views")
    @classmethod
    def _views_parse(cls, views: tuple[str, ...]) -> tuple[str, ...]:
        for view in views:
            parse_duration_seconds(view)
        return views

    @field_validator(
        "lcp_thresholds_seconds",
        "inp_thresholds_seconds",
        "cls_thresholds",
        "fcp_thresholds_seconds",
        "ttfb_thresholds_seconds",
    )
    @classmethod
    def _thresholds_ordered(cls, pair: tuple[float, float]) -> tuple[float, float]:
        good, poor = pair
        if not 0 <= good <= poor < float("inf"):
            raise ValueError("thresholds are [good, poor] with 0 <= good <= poor")
        return pair

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Environment first, then non-None flag values on top; errors become ConfigError."""
        given = {k: v for k, v in overrides.items() if v is not None}
        warn_unknown_env(os.environ)
        try:
            return cls(**given)
        except ValidationError as exc:
            problems = "; ".join(map(_problem, exc.errors()))
            raise ConfigError(f"invalid settings: {problems}") from exc

    def describe(self) -> str:
        """Every setting as `name=value`, secrets as `***` (for the start log)."""
        parts = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = "***"
            elif isinstance(value, tuple):
                text = ",".join(map(str, value)) or "-"
            else:
                text = "-" if value is None or value == "" else str(value)
            parts.append(f"{name}={text}")
        return " ".join(parts)

    @property
    def window_ms(self) -> int:
        return self.window_seconds * 1000

    @property
    def lateness_ms(self) -> int:
        return int(self.allowed_lateness_seconds * 1000)

    @property
    def views(self) -> tuple[str, ...]:
        return ("1m", *self.rolling_views)

    @property
    def web_vital_thresholds(self) -> dict[str, tuple[float, float]]:
        """vital -> (good, poor) limits in the vital's event unit (ms; CLS unitless)."""

        def ms(pair: tuple[float, float]) -> tuple[float, float]:
            return (round(pair[0] * 1000, 6), round(pair[1] * 1000, 6))  # 0.7 s -> 700.0 ms

        return {
            "lcp": ms(self.lcp_thresholds_seconds),
            "inp": ms(self.inp_thresholds_seconds),
            "cls": self.cls_thresholds,
            "fcp": ms(self.fcp_thresholds_seconds),
            "ttfb": ms(self.ttfb_thresholds_seconds),
        }

    @property
    def alertmanager_urls(self) -> tuple[str, ...]:
        return tuple(u.strip() for u in self.alertmanager_url.split(",") if u.strip())

    @property
    def collect_origins(self) -> frozenset[str]:
        return frozenset(
            o.strip().rstrip("/") for o in self.collect_allowed_origins.split(",") if o.strip()
        )


def parse_duration_seconds(text: str) -> int:
    """'90s', '5m', '1h', '2d' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ValueError(f"not a duration like 5m, 1h: {text!r}")
    return int(text[:-1]) * units[text[-1]]


def split_list(text: str) -> list[str]:
    """'a, b' or '["a", "b"]' -> ['a', 'b'] (empty items dropped)."""
    text = text.strip()
    if text.startswith("["):
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not a JSON list: {exc}") from None
        if not isinstance(items, list):
            raise ValueError("not a JSON list")
        return [str(item).strip() for item in items if str(item).strip()]
    return [item.strip() for item in text.split(",") if item.strip()]


def check_http_url(url: str) -> None:
    """ValueError unless `url` is http(s)://host[:port][/path]."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ValueError(f"{url!r} is not a URL like http://host:9093")
    try:
        parsed.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise ValueError(f"{url!r} has a bad port") from None


def _problem(error: Mapping[str, Any]) -> str:
    """One pydantic error as `EXPMON_NAME=value: why`, the name a user set."""
    field = ".".join(map(str, error["loc"]))
    name = f"{ENV_PREFIX}{field.split('.')[0].upper()}"
    message = str(error["msg"]).removeprefix("Value error, ")
    value = error.get("input")
    secret = "password" in field
    shown = f"={value!r}" if isinstance(value, str | int | float) and not secret else ""
    return f"{name}{shown}: {message}"


_warned: set[str] = set()


def known_env() -> list[str]:
    return sorted({f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields} | OTHER_ENV)


def warn_unknown_env(environ: Mapping[str, str]) -> list[str]:
    """Warn (once per name and process) about EXPMON_* variables no setting reads, with the
    closest known name: a typo must not be silently ignored. Returns the warnings."""
    known = known_env()
    lines = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name in _warned:
            continue
        _warned.add(name)
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else ""
        lines.append(f"unknown environment variable {name} is ignored{hint}")
        log.warning("%s", lines[-1])
    return lines
