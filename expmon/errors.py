"""One root exception; each area subclasses it and carries its own data.

The CLI prints an ExpmonError as one line (`expmon: error: ...`) and exits 2; `detail`
(a log tail, say) is printed below it only with `--debug`, with the traceback.
"""

from __future__ import annotations


class ExpmonError(Exception):
    """Root of every error Experience Monitor raises on purpose."""

    #: extra lines (a log tail...) shown only with --debug
    detail: str = ""


class ConfigError(ExpmonError):
    """A setting is missing or invalid."""


class UsageError(ConfigError):
    """A command line that cannot be run: an unknown flag, a missing argument."""


class IncidentSpecError(ConfigError):
    """An `--incident KIND@START+DURATION[:k=v,...]` that does not parse."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"--incident {spec!r}: {reason}")


class PortInUseError(ExpmonError):
    """A port the process must listen on is taken by another process."""

    def __init__(self, host: str, port: int, what: str, setting: str) -> None:
        self.host, self.port, self.what, self.setting = host, port, what, setting
        super().__init__(
            f"{what} port {host}:{port} is already in use by another process "
            f"(pick another with {setting}, or stop the other process)"
        )


class BrokerUnreachableError(ExpmonError):
    """No bootstrap server of the Kafka cluster accepted a connection."""

    def __init__(self, bootstrap: str, reason: str) -> None:
        self.bootstrap, self.reason = bootstrap, reason
        super().__init__(
            f"cannot reach Kafka at {bootstrap} ({reason}); start a broker or set "
            "--bootstrap / EXPMON_KAFKA_BOOTSTRAP"
        )


class KafkaAuthError(ExpmonError):
    """The broker refused the SASL credentials (or the TLS handshake failed)."""

    def __init__(self, bootstrap: str, reason: str) -> None:
        self.bootstrap, self.reason = bootstrap, reason
        super().__init__(f"Kafka at {bootstrap} refused authentication: {reason}")


class KafkaHandshakeError(ExpmonError):
    """A bootstrap server accepted TCP but did not speak Kafka with these settings in time."""

    def __init__(self, bootstrap: str, reason: str) -> None:
        self.bootstrap, self.reason = bootstrap, reason
        super().__init__(f"no Kafka handshake with {bootstrap}: {reason}")


class UnknownTopicError(ExpmonError):
    """Topics a command must write to or read from do not exist on the cluster."""

    def __init__(self, bootstrap: str, topics: list[str], hint: str) -> None:
        self.bootstrap, self.topics = bootstrap, topics
        super().__init__(f"topic(s) {', '.join(topics)} do not exist on {bootstrap}; {hint}")


class DemoChildError(ExpmonError):
    """A child process (the demo's worker or simulator) exited on its own."""

    def __init__(self, name: str, returncode: int, log_tail: str) -> None:
        self.name, self.returncode, self.log_tail = name, returncode, log_tail
        lines = [line for line in log_tail.splitlines() if line.strip()]
        cause = lines[-1].strip() if lines else "no output"
        super().__init__(f"{name} exited with code {returncode}: {cause}")
        self.detail = f"--- {name} log (last lines) ---\n{log_tail}" if log_tail else ""


class LocalKafkaError(ExpmonError):
    """The embedded broker could not be fetched, started or reached."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        super().__init__(message)
        self.detail = f"--- broker log (last lines) ---\n{log_tail}" if log_tail else ""


class StateError(ExpmonError):
    """Persisted processor state could not be read back."""


class TopicError(ExpmonError):
    """Kafka topics could not be listed, created or checked."""


class ProduceError(ExpmonError):
    """Records could not be handed to the broker (or were not acknowledged in time)."""
