"""One root exception; each area subclasses it and carries its own data."""

from __future__ import annotations


class ExpmonError(Exception):
    """Root of every error Experience Monitor raises on purpose."""


class ConfigError(ExpmonError):
    """A setting is missing or invalid."""


class LocalKafkaError(ExpmonError):
    """The embedded broker could not be fetched, started or reached."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        detail = f"{message}\n--- broker log (last lines) ---\n{log_tail}" if log_tail else message
        super().__init__(detail)


class StateError(ExpmonError):
    """Persisted processor state could not be read back."""


class TopicError(ExpmonError):
    """Kafka topics could not be listed, created or checked."""


class ProduceError(ExpmonError):
    """Records could not be handed to the broker (or were not acknowledged in time)."""
