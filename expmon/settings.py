"""One typed, frozen settings object, built from flags and `EXPMON_*` variables.

Build it once at the entry point (`Settings.from_env(**flag_overrides)`) and pass it
down; nothing reads the environment after that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from expmon.errors import ConfigError

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

    # --- Topics ------------------------------------------------------------
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

    # --- Metrics endpoint --------------------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9477, ge=0, le=65535)

    # --- Windows -----------------------------------------------------------
    window_seconds: int = Field(60, ge=1)
    allowed_lateness_seconds: float = Field(30.0, ge=0)
    idle_partition_timeout_seconds: float = Field(
        15.0,
        gt=0,
        description="live mode: a partition silent this long stops holding back the watermark",
    )
    rolling_views: tuple[str, ...] = ("5m", "15m", "1h")

    # --- Page loads --------------------------------------------------------
    slow_threshold_seconds: float = Field(3.0, gt=0)
    apdex_t_seconds: float = Field(
        2.5, gt=0, description="Apdex T: satisfied <= T, tolerating <= 4T"
    )
    max_pages: int = Field(50, ge=1, description="distinct page labels before `other`")
    # Core Web Vitals ratings (Google's thresholds): good <= first, poor > second
    lcp_thresholds_seconds: tuple[float, float] = (2.5, 4.0)
    inp_thresholds_seconds: tuple[float, float] = (0.2, 0.5)
    cls_thresholds: tuple[float, float] = (0.1, 0.25)
    fcp_thresholds_seconds: tuple[float, float] = (1.8, 3.0)
    ttfb_thresholds_seconds: tuple[float, float] = (0.8, 1.8)
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
    rules_files: tuple[Path, ...] = Field(
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
    telemetry_interval_seconds: float = Field(
        2.0, gt=0, description="how often workers report pipeline telemetry to the alert engine"
    )

    # --- Ingestion limits --------------------------------------------------
    max_record_bytes: int = Field(1_000_000, ge=1024)
    max_events_per_record: int = Field(10_000, ge=1)
    max_future_seconds: float = Field(
        86_400.0, ge=0, description="event time this far past the wall clock is absurd"
    )

    # --- Processing --------------------------------------------------------
    batch_max_records: int = Field(5000, ge=1)
    batch_within_seconds: float = Field(
        0.25, gt=0, description="longest wait to fill a batch (adds at most this to latency)"
    )
    state_dir: Path = Field(default_factory=lambda: default_cache_dir() / "state")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

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
        try:
            return cls(**given)
        except ValidationError as exc:
            lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise ConfigError("invalid settings: " + "; ".join(lines)) from exc

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


def parse_duration_seconds(text: str) -> int:
    """'90s', '5m', '1h', '2d' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip()
    if len(text) < 2 or text[-1] not in units or not text[:-1].isdigit():
        raise ValueError(f"not a duration like 5m, 1h: {text!r}")
    return int(text[:-1]) * units[text[-1]]
