"""One typed, frozen configuration object: YAML file, then ``SAEWATCH_*`` environment overrides.

Nested settings use ``__`` in environment names (``SAEWATCH_KAFKA__TOPIC=llm-events``);
``SAEWATCH_KAFKA_BOOTSTRAP`` is accepted as a short form of ``SAEWATCH_KAFKA__BOOTSTRAP_SERVERS``.
Everything is validated before any connection is made.

>>> s = Settings()
>>> s.kafka.dlq_topic_name, s.web.listen_address
('llm-events.dlq', '127.0.0.1:9108')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from saewatch.config.base import Section as _Section
from saewatch.config.behaviours import BehaviourSpec as BehaviourSpec
from saewatch.config.behaviours import check_unique
from saewatch.config.labels import LabelsSettings as LabelsSettings
from saewatch.config.labels import LLMSettings as LLMSettings
from saewatch.config.source import KafkaSettings as KafkaSettings
from saewatch.config.source import SourceSettings as SourceSettings
from saewatch.errors import ConfigError


class SaeRef(_Section):
    """Either a local sae-lens directory (``path``) or a hub release (``release`` + ``sae_id``)."""

    path: Path | None = None
    release: str | None = None
    sae_id: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> SaeRef:
        if (self.path is None) == (self.release is None):
            raise ValueError("encode.sae: give either path, or release and sae_id")
        if self.release is not None and self.sae_id is None:
            raise ValueError("encode.sae: release needs sae_id")
        return self


class EncodeSettings(_Section):
    """Model and SAE. Without ``model``/``sae`` the embedded offline default is used."""

    model: str | None = None  # local dir or hub name; None = the embedded default
    gguf_file: str | None = None
    sae: SaeRef | None = None
    # Feature labels and cards (saewatch feature-cards); None = the files beside the SAE (the
    # shipped default's folder or sae.path), used only when they describe that SAE.
    labels_path: Path | None = None
    cards_path: Path | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_tokens_per_text: int = Field(default=256, ge=8)
    # Of a longer text's budget, the tokens taken from its end, so sign-offs, disclaimers and
    # closing questions are encoded; None = a quarter of the budget (first 192 + last 64 of
    # 256), 0 keeps the head only. ``tail_tokens`` is the value in force.
    tail_tokens_per_text: int | None = Field(default=None, ge=0)
    max_tokens_per_batch: int = Field(default=8_192, ge=64)
    threshold: float = Field(default=0.0, ge=0.0)
    # Per-feature thresholds (encode/presence.py): auto = the SAE's presence_thresholds.json if any
    presence_thresholds: Path | Literal["auto", "none"] = "auto"
    use_chat_template: bool = True
    cpu_threads: int | None = Field(default=None, ge=1)
    # auto: bf16 weights on CUDA; on CPU bf16 autocast where the CPU has native bf16
    # (avx512_bf16/amx_bf16: 1.6-2x faster; a start-up probe logs the figures), else fp32
    # (emulated bf16 is ~6x slower). bf16 forces autocast on CPU. docs/BENCHMARKS.md.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Tokens the FVE/L0 sanity check looks at on the first batches (0 turns it off).
    sanity_tokens: int = Field(default=4_096, ge=0)
    # Tokenize the next poll in a thread while the model runs on this one (the daemon polls
    # one batch ahead under backlog). auto = on CUDA only: on a CPU both cores already run the
    # forward, so it measured no gain there (docs/BENCHMARKS.md, issue 17).
    look_ahead: Literal["auto", "on", "off"] = "auto"
    # Record, per (document, present feature), the 24 tokens around the peak with their
    # activations, for the highlighted examples (encode/windows.py; measured +1.7 % encode
    # time). Off: examples are shown without marks.
    highlight_windows: bool = True

    @model_validator(mode="after")
    def _check_tail(self) -> EncodeSettings:
        if self.tail_tokens >= self.max_tokens_per_text:
            raise ValueError(
                f"encode.tail_tokens_per_text={self.tail_tokens_per_text} must be below "
                f"encode.max_tokens_per_text={self.max_tokens_per_text} (the head keeps the rest)"
            )
        return self

    @property
    def tail_tokens(self) -> int:
        """Tokens of a longer text's budget taken from its end (``tail_tokens_per_text``)."""
        if self.tail_tokens_per_text is None:
            return self.max_tokens_per_text // 4
        return self.tail_tokens_per_text


class WindowSettings(_Section):
    """Recent windows kept beside the cumulative counts, as ring buffers of time buckets."""

    bucket_seconds: int = Field(default=300, ge=1)  # the finest bucket width
    windows: dict[str, int] = Field(default_factory=lambda: {"1h": 3_600, "24h": 86_400})
    # Each window gets buckets of max(bucket_seconds, window / max_buckets_per_window) seconds,
    # so a 24 h window costs 24 arrays, not 288: memory stays a few arrays per window.
    max_buckets_per_window: int = Field(default=24, ge=2, le=1_000)

    @model_validator(mode="after")
    def _check_windows(self) -> WindowSettings:
        for name, seconds in self.windows.items():
            if name == "all" or seconds < self.bucket_seconds:
                raise ValueError(
                    f"state.windows.windows[{name!r}]: name 'all' is reserved and the window "
                    f"must be at least bucket_seconds={self.bucket_seconds}"
                )
        return self


class StateSettings(_Section):
    snapshot_dir: Path = Path("var/snapshots")
    snapshot_interval_s: float = Field(default=30.0, gt=0)
    snapshots_kept: int = Field(default=3, ge=1)
    windows: WindowSettings = Field(default_factory=WindowSettings)
    # NPMI among the top-N most frequent features per field: memory and CPU grow with N**2
    # (three dense N x N count updates per batch; 256 costs ~4 us per event, 512 ~15 us).
    cooccurrence_top_n: int = Field(default=256, ge=8, le=4_096)
    retrieval_capacity: int = Field(default=100_000, ge=100)
    examples_per_feature: int = Field(default=5, ge=1, le=50)
    # The pooled drift test of each version against the one before (state/bets.py): recent
    # events kept per version to pair a release's first events with, and unpaired ones per side.
    bet_queue_events: int = Field(default=1_024, ge=16, le=100_000)
    store_snippets: bool = True  # off for privacy: no text is kept or served
    snippet_chars: int = Field(default=280, ge=20, le=4_000)
    cluster_dims: int = Field(default=48, ge=4, le=512)
    cluster_count: int = Field(default=16, ge=2, le=256)
    # river learns at Python speed: from every event of the first cluster_warmup_events, then from
    # every cluster_learn_every-th; every event is assigned to its nearest centre (vectorised).
    cluster_warmup_events: int = Field(default=2_000, ge=0)
    cluster_learn_every: int = Field(default=256, ge=1)
    retrieval_max_features: int = Field(default=64, ge=1, le=4_096)  # strongest per event
    metadata_values_max: int = Field(default=256, ge=1, le=10_000)  # NPMI metadata (key, value)s
    # Event ids remembered to drop replays (an encoder's crash, upstream retries) exactly.
    dedup_capacity: int = Field(default=200_000, ge=1_000)
    seed: int = 42


Field_ = Literal["prompt", "response"]


def _response_only() -> list[Field_]:
    return ["response"]


class ComparisonSpec(_Section):
    model_id: str
    baseline: str
    candidate: str
    fields: list[Field_] = Field(default_factory=_response_only)


class DiffSettings(_Section):
    comparisons: list[ComparisonSpec] = Field(default_factory=list)
    auto_latest: bool = True  # newest version of each model_id vs the one before
    window_comparisons: bool = True  # recent window vs the version's baseline
    fields: list[Field_] = Field(default_factory=_response_only)
    q_level: float = Field(default=0.05, gt=0, lt=1)
    alpha: float = Field(default=0.01, gt=0, lt=1)  # always-valid false-alarm rate per stream
    min_documents: int = Field(default=100, ge=10)
    top_k: int = Field(default=10, ge=1, le=50)
    interval_s: float = Field(default=10.0, gt=0)
    examples_per_side: int = Field(default=2, ge=0, le=10)
    # Exact conditional (Fisher) test when the smallest expected cell is below this; z otherwise.
    exact_below: float = Field(default=10.0, ge=0)
    # Mixture s.d. of the frequency change: the size of change the alarm is most sensitive to
    # (SAE feature frequencies of real version pairs move by 0.1-0.4; docs/BENCHMARKS.md).
    msprt_tau: float = Field(default=0.2, gt=0, lt=1)
    # Text descriptors (length, structure, script) share the verdict's always-valid family with
    # the features (one Bonferroni over both, so the false-alarm rate stays <= alpha); off, they
    # are still tested and reported (at alpha of their own) but never make the verdict drift.
    descriptors_in_verdict: bool = True
    # The pooled betting test over all features and descriptors (state/betting.py) is the
    # verdict's main test where it runs (a version against the one before); it gets this share
    # of alpha, the per-feature and descriptor family the rest (a union bound: <= alpha in all).
    # 0 turns it off (the family alone decides, with all of alpha). The bet weighs descriptors
    # too, whatever descriptors_in_verdict says.
    bet_alpha_share: float = Field(default=0.5, ge=0, lt=1)


class WebSettings(_Section):
    """The HTTP port: metrics, API, report page. With a bearer token (inline or, for a mounted
    secret, a file) every route but the probes needs it; with a certificate and key the port
    speaks HTTPS only (TLS 1.2+), and with a client CA it asks for client certificates too (the
    ``tls_server_config`` of Prometheus' ``--web.config.file``)."""

    listen_address: str = "127.0.0.1:9108"
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None  # surrounding whitespace (a trailing newline) is ignored
    tls_cert_file: Path | None = None  # PEM certificate, or chain, of the server
    tls_key_file: Path | None = None  # PEM private key of that certificate
    tls_client_ca_file: Path | None = None  # PEM CA bundle: clients must present a cert it signed
    serve_snippets: bool = True
    top_k: int = Field(default=10, ge=1, le=50)  # hard cap 50: bounded metric cardinality

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen_address.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)

    @property
    def tls(self) -> bool:
        return self.tls_cert_file is not None

    def token(self) -> str:
        """The bearer token ('' for none), read from ``bearer_token_file`` when that is set."""
        if self.bearer_token_file is not None:
            try:
                return self.bearer_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(f"web.bearer_token_file: cannot read it ({exc})") from exc
        return self.bearer_token.get_secret_value() if self.bearer_token else ""

    @model_validator(mode="after")
    def _check_address(self) -> WebSettings:
        host, _, port = self.listen_address.rpartition(":")
        if not port.isdigit() or not 0 <= int(port) < 65_536:
            raise ValueError(f"web.listen_address {self.listen_address!r}: expected HOST:PORT")
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("web.bearer_token and web.bearer_token_file: set one of them")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("web.tls_cert_file and web.tls_key_file: set both, or neither")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("web.tls_client_ca_file needs web.tls_cert_file and web.tls_key_file")
        files = {"bearer_token_file": self.bearer_token_file, "tls_cert_file": self.tls_cert_file,
                 "tls_key_file": self.tls_key_file, "tls_client_ca_file": self.tls_client_ca_file}
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"web.{name}: {path} is not a readable file")
        if self.bearer_token_file is not None and not self.token():
            raise ValueError(f"web.bearer_token_file: {self.bearer_token_file} is empty")
        return self


class _FlatBootstrapSource(PydanticBaseSettingsSource):
    """Honours ``SAEWATCH_KAFKA_BOOTSTRAP=host:port[,host:port]`` (the scripts' variable)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        value = os.environ.get("SAEWATCH_KAFKA_BOOTSTRAP")
        if not value:
            return {}
        return {"kafka": {"bootstrap_servers": [s.strip() for s in value.split(",") if s]}}


class _YamlSource(PydanticBaseSettingsSource):
    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class Settings(BaseSettings):
    """All of saewatch's settings; build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SAEWATCH_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    source: SourceSettings = Field(default_factory=SourceSettings)
    encode: EncodeSettings = Field(default_factory=EncodeSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    diff: DiffSettings = Field(default_factory=DiffSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    labels: LabelsSettings = Field(default_factory=LabelsSettings)  # the optional LLM
    # Watched behaviours (config/behaviours.py): fitted at start where the state lacks them.
    behaviours: Annotated[list[BehaviourSpec], AfterValidator(check_unique)] = Field(
        default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_data = init_settings.init_kwargs.pop("_yaml", {})  # type: ignore[attr-defined]
        return (
            init_settings,
            env_settings,
            _FlatBootstrapSource(settings_cls),
            _YamlSource(settings_cls, yaml_data),
        )


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (YAML), apply ``SAEWATCH_*`` environment variables, then ``overrides``.

    Raises :class:`ConfigError` with every problem listed, one per line.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} not found (--config.file)") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    try:
        return Settings(_yaml=data, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where} ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)
