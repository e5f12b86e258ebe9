"""Configuration: YAML, then SAEWATCH_* environment; every mistake named; secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from saewatch.config import load_settings
from saewatch.errors import ConfigError
from saewatch.source.client import client_options, consumer_options, redact


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("SAEWATCH_"):
            monkeypatch.delenv(name)


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "saewatch.yml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    s = load_settings()
    assert s.kafka.bootstrap_servers == ["127.0.0.1:9092"]
    assert (s.kafka.topic, s.kafka.dlq_topic_name, s.kafka.group_id) == (
        "llm-events",
        "llm-events.dlq",
        "saewatch",
    )
    assert s.source.max_chars == 8_000


def test_yaml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _yaml(
        tmp_path, "kafka:\n  topic: prod-events\n  group_id: g1\nsource:\n  max_chars: 500\n"
    )
    s = load_settings(path)
    assert (s.kafka.topic, s.kafka.dlq_topic_name, s.kafka.group_id, s.source.max_chars) == (
        "prod-events",
        "prod-events.dlq",
        "g1",
        500,
    )
    monkeypatch.setenv("SAEWATCH_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("SAEWATCH_KAFKA_BOOTSTRAP", "k1:9092, k2:9092")
    s = load_settings(path)
    assert s.kafka.group_id == "from-env"
    assert s.kafka.topic == "prod-events"
    assert s.kafka.bootstrap_servers == ["k1:9092", "k2:9092"]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("kafka:\n  topik: x\n", ["kafka.topik: Extra inputs are not permitted"]),
        (
            "source:\n  max_chars: 3\n",
            ["source.max_chars: Input should be greater than or equal to 16"],
        ),
        (
            "kafka:\n  security_protocol: SASL_SSL\n",
            ["kafka: Value error, security_protocol SASL_SSL needs kafka.sasl_mechanism"],
        ),
        ("kafka:\n  security_protocol: TLS\n", ["kafka.security_protocol: Input should be"]),
        (
            "kafka:\n  ssl_cafile: /nonexistent/ca.pem\n",
            ["kafka.ssl_cafile: file /nonexistent/ca.pem does not exist"],
        ),
        ("source:\n  kind: file\n", ["source.path"]),
        (
            "kafka:\n  max_poll_records: 0\nweb:\n  listen_address: nowhere\n",
            [
                "2 problem(s)",
                "kafka.max_poll_records",
                "web.listen_address 'nowhere': expected HOST:PORT",
            ],
        ),
    ],
)
def test_invalid_yaml_names_every_problem(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"invalid configuration in {path}")
    for fragment in fragments:
        assert fragment in message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*missing.yml not found \(--config.file\)"):
        load_settings(tmp_path / "missing.yml")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_settings(_yaml(tmp_path, "kafka: [unclosed\n"))
    with pytest.raises(ConfigError, match="must hold a mapping at the top level"):
        load_settings(_yaml(tmp_path, "- just\n- a list\n"))


def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAEWATCH_SOURCE__BATCH_SIZE", "many")
    with pytest.raises(ConfigError, match="source.batch_size: Input should be a valid integer"):
        load_settings()


def test_sasl_ssl_pass_through_and_secrets_stay_hidden(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    path = _yaml(
        tmp_path,
        f"kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-512\n"
        f"  sasl_username: svc-saewatch\n  sasl_password_file: {secret}\n  ssl_cafile: {ca}\n"
        f"  client_id: saewatch-eu1\n",
    )
    s = load_settings(path)
    opts = consumer_options(s.kafka, 64)
    assert opts["security_protocol"] == "SASL_SSL"
    assert opts["sasl_mechanism"] == "SCRAM-SHA-512"
    assert opts["sasl_plain_username"] == "svc-saewatch"
    assert opts["sasl_plain_password"] == "hunter2"  # read from the file, newline stripped
    assert opts["ssl_cafile"] == str(ca)
    assert opts["client_id"] == "saewatch-eu1"
    assert opts["enable_auto_commit"] is False
    assert "hunter2" not in repr(redact(opts))
    assert "hunter2" not in s.model_dump_json()  # what `saewatch check-config` prints


def test_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAEWATCH_KAFKA__SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("SAEWATCH_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("SAEWATCH_KAFKA__SASL_USERNAME", "u")
    monkeypatch.setenv("SAEWATCH_KAFKA__SASL_PASSWORD", "pw-from-env")
    s = load_settings()
    assert client_options(s.kafka)["sasl_plain_password"] == "pw-from-env"
    assert "pw-from-env" not in repr(s) and "pw-from-env" not in s.model_dump_json()
    with pytest.raises(ConfigError, match="not both"):
        load_settings(None, kafka={"sasl_password": "a", "sasl_password_file": __file__})


def _pem(tmp_path: Path, name: str, text: str = "x\n") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("kafka", "fragment"),
    [
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
         "needs kafka.sasl_username (SAEWATCH_KAFKA__SASL_USERNAME)"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u"},
         "needs a password: kafka.sasl_password (SAEWATCH_KAFKA__SASL_PASSWORD) or "
         "kafka.sasl_password_file"),
        ({"security_protocol": "SSL", "ssl_keyfile": "KEY"}, "set kafka.ssl_certfile too"),
        ({"security_protocol": "SSL", "ssl_password": "pw"}, "set kafka.ssl_certfile too"),
        ({"ssl_certfile": "CERT", "ssl_password": "a", "ssl_password_file": "KEY"},
         "set kafka.ssl_password or kafka.ssl_password_file, not both"),
    ],
)
def test_security_settings_that_cannot_connect_are_refused(
    tmp_path: Path, kafka: dict[str, str], fragment: str
) -> None:
    files = {"KEY": str(_pem(tmp_path, "key.pem")), "CERT": str(_pem(tmp_path, "cert.pem"))}
    kafka = {k: files.get(v, v) for k, v in kafka.items()}
    with pytest.raises(ConfigError) as info:
        load_settings(None, kafka=kafka)
    assert fragment in str(info.value)


def test_empty_password_file_is_named(tmp_path: Path) -> None:
    empty = _pem(tmp_path, "password", "\n")
    with pytest.raises(ConfigError, match=f"needs a password: .*\\({empty} is empty\\)"):
        load_settings(None, kafka={"security_protocol": "SASL_SSL", "sasl_username": "u",
                                   "sasl_mechanism": "SCRAM-SHA-256", "sasl_password_file": empty})


def test_key_password_from_file_or_environment_is_passed_and_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = _pem(tmp_path, "client.pem"), _pem(tmp_path, "client.key")
    key_password = _pem(tmp_path, "key-password", "k3y-s3cret\n")
    kafka = {"security_protocol": "SSL", "ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    s = load_settings(None, kafka=kafka | {"ssl_password_file": str(key_password)})
    opts = client_options(s.kafka)
    assert (opts["ssl_certfile"], opts["ssl_keyfile"]) == (str(cert), str(key))
    assert opts["ssl_password"] == "k3y-s3cret"  # read from the file, newline stripped
    assert redact(opts)["ssl_password"] == "***"
    monkeypatch.setenv("SAEWATCH_KAFKA__SSL_PASSWORD", "k3y-from-env")
    s = load_settings(None, kafka=kafka)
    assert client_options(s.kafka)["ssl_password"] == "k3y-from-env"
    assert "k3y-from-env" not in repr(s) and "k3y-from-env" not in s.model_dump_json()
    assert "k3y-from-env" not in repr(redact(consumer_options(s.kafka, 8)))
