"""The source stage's settings: the Kafka connection and topics, and the event source."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from saewatch.config.base import Section as _Section


class KafkaSettings(_Section):
    """Connection and topics. Credentials come from the environment or a file, never logged."""

    bootstrap_servers: list[str] = Field(default_factory=lambda: ["127.0.0.1:9092"])
    topic: str = "llm-events"
    dlq_topic: str | None = None  # default: "<topic>.dlq"
    features_topic: str = "llm-features"
    group_id: str = "saewatch"
    client_id: str = "saewatch"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None  # a client certificate (mutual TLS), PEM
    ssl_keyfile: Path | None = None  # its private key, PEM (default: inside ssl_certfile)
    ssl_password: SecretStr | None = None  # the password of an encrypted private key
    ssl_password_file: Path | None = None
    max_poll_records: int = Field(default=128, ge=1, le=10_000)
    # Encoding a batch on CPU can take tens of seconds; the poll interval must exceed it.
    max_poll_interval_ms: int = Field(default=600_000, ge=10_000)
    session_timeout_ms: int = Field(default=45_000, ge=6_000)
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    retry_backoff_s: float = Field(default=1.0, gt=0)
    retry_backoff_max_s: float = Field(default=30.0, gt=0)

    @property
    def dlq_topic_name(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"

    @model_validator(mode="after")
    def _check_security(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise ValueError(
                f"security_protocol {self.security_protocol} needs kafka.sasl_mechanism"
            )
        for secret in ("sasl_password", "ssl_password"):
            if getattr(self, secret) is not None and getattr(self, f"{secret}_file") is not None:
                raise ValueError(f"set kafka.{secret} or kafka.{secret}_file, not both")
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "sasl_password_file",
                     "ssl_password_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"kafka.{name}: file {path} does not exist")
        if (self.ssl_keyfile is not None or self.key_password() is not None) and (
            self.ssl_certfile is None
        ):
            raise ValueError("kafka.ssl_keyfile and kafka.ssl_password belong to a client "
                             "certificate: set kafka.ssl_certfile too")
        self._check_credentials()
        return self

    def _check_credentials(self) -> None:
        # kafka-python would fail on its IO thread, or log in with an empty password.
        if not self.security_protocol.startswith("SASL") or self.sasl_mechanism == "OAUTHBEARER":
            return
        if not self.sasl_username:
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs kafka.sasl_username "
                             "(SAEWATCH_KAFKA__SASL_USERNAME)")
        if not self.password():
            raise ValueError(
                f"sasl_mechanism {self.sasl_mechanism} needs a password: kafka.sasl_password "
                "(SAEWATCH_KAFKA__SASL_PASSWORD) or kafka.sasl_password_file"
                + (f" ({self.sasl_password_file} is empty)" if self.sasl_password_file else "")
            )

    def password(self) -> str | None:
        """The SASL password, from ``sasl_password_file`` (re-read each call) or the setting."""
        return _secret(self.sasl_password, self.sasl_password_file)

    def key_password(self) -> str | None:
        """The password of the client key (``ssl_keyfile``), from the file or the setting."""
        return _secret(self.ssl_password, self.ssl_password_file)


def _secret(value: SecretStr | None, path: Path | None) -> str | None:
    # A file's trailing newline is not part of the secret (echo and editors add one).
    if path is not None:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror}") from exc
    return value.get_secret_value() if value is not None else None


class SourceSettings(_Section):
    """Where events come from and how big one may be."""

    kind: Literal["kafka", "file"] = "kafka"
    path: Path | None = None  # JSONL file for kind=file
    max_chars: int = Field(default=8_000, ge=16)  # per text field; longer texts are truncated
    batch_size: int = Field(default=64, ge=1, le=10_000)
    # `saewatch aggregate` reads codes that are computed already; each poll costs a Kafka fetch
    # round trip, so small batches leave it waiting (64 -> 512: ~4x, docs/BENCHMARKS.md).
    features_batch_size: int = Field(default=512, ge=1, le=10_000)
    poll_timeout_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _check_path(self) -> SourceSettings:
        if self.kind == "file" and self.path is None:
            raise ValueError("source.kind=file needs source.path (a JSONL file of events)")
        return self
