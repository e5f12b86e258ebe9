"""Readers shared by the deployment-file tests: strict YAML, compose interpolation, Dockerfiles.

>>> load_yaml_text("a: 1\\nb: [x]")
[{'a': 1, 'b': ['x']}]
>>> interpolate({"image": "${IMG:-saewatch:cpu}", "cmd": "echo $$HOME"})
{'image': 'saewatch:cpu', 'cmd': 'echo $HOME'}
>>> parse_dockerfile("FROM a AS b\\nRUN x \\\\\\n  && y\\n")[1]
('RUN', 'x && y')
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "k8s"
DOCKER_DIR = DEPLOY / "docker"
RULES_DIR = DEPLOY / "prometheus" / "rules"
DASHBOARDS_DIR = ROOT / "dashboards"

# SAEWATCH_* variables that are not Settings fields (read directly by their owners).
NON_SETTINGS_ENV = {"SAEWATCH_CACHE_DIR", "SAEWATCH_DATA_DIR", "SAEWATCH_KAFKA_BOOTSTRAP"}


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)  # resolves `<<: *anchor` merges first
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_text(text: str) -> list[Any]:
    """Every document of a YAML stream, refusing duplicate keys; empty documents dropped."""
    return [doc for doc in yaml.load_all(text, Loader=_StrictLoader) if doc is not None]


def load_yaml(path: Path) -> list[Any]:
    return load_yaml_text(path.read_text())


def load_one(path: Path) -> Any:
    docs = load_yaml(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]


_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_]\w*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_]\w*))")


def interpolate(value: Any, env: dict[str, str] | None = None) -> Any:
    """Compose-style ``${VAR}``/``${VAR:-default}``/``$$`` interpolation of every string value.

    With ``env`` empty (the default) every variable must have a default, which is what makes
    ``docker compose config`` work out of the box.
    """
    env = env or {}
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def replace(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name, op, arg = m.group(2) or m.group(5), m.group(3), m.group(4)
        current = env.get(name)
        if op in (":-", "-") and (current is None or (op == ":-" and current == "")):
            return arg
        if current is None:
            raise KeyError(f"compose variable {name} has no default")
        return current

    return _VAR.sub(replace, value)


def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        full = (pending + line).strip()
        pending = ""
        instruction, _, args = full.partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Instructions of the last build stage (from its FROM on)."""
    last = max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM")
    return instructions[last:]


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """ENV KEY=VALUE pairs (the only ENV form these Dockerfiles use)."""
    env: dict[str, str] = {}
    for ins, args in instructions:
        if ins == "ENV":
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {args!r}: use the KEY=VALUE form"
                env[key] = value
    return env


def settings_env_paths() -> set[tuple[str, ...]]:
    """Every settings path reachable by a SAEWATCH_<SECTION>__<FIELD> variable, lower case."""
    from pydantic import BaseModel

    from saewatch.config import Settings

    paths: set[tuple[str, ...]] = set()

    def walk(model: type[BaseModel], prefix: tuple[str, ...]) -> None:
        for name, field in model.model_fields.items():
            paths.add((*prefix, name))
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, (*prefix, name))

    walk(Settings, ())
    return paths


def env_to_path(name: str) -> tuple[str, ...]:
    """``SAEWATCH_KAFKA__SASL_USERNAME`` -> ``('kafka', 'sasl_username')``."""
    assert name.startswith("SAEWATCH_"), name
    return tuple(part.lower() for part in name.removeprefix("SAEWATCH_").split("__"))


def yaml_paths(data: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every key path of a nested mapping (for 'set here but overridden by env' checks)."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*prefix, str(key))
            yield from yaml_paths(value, (*prefix, str(key)))


def check_cli(args: list[str]) -> None:
    """The role command and its flags parse with the real CLI, once the role is registered."""
    import pytest

    from saewatch.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    if args[0] not in commands:
        pytest.skip(f"`saewatch {args[0]}` is not registered in saewatch.cli yet")
    parsed = parser.parse_args(args)
    assert parsed.command == args[0]
    # The images set SAEWATCH_WEB__LISTEN_ADDRESS=0.0.0.0:9108. A flag whose default is the
    # loopback address (rather than None = "from the settings") would silently override it, and
    # no probe or scrape from outside the container could reach the daemon.
    loopback = [k for k, v in vars(parsed).items() if isinstance(v, str) and v.startswith("127.")]
    assert not loopback, f"CLI defaults {loopback} would override the container's listen address"


def rule_files() -> list[Path]:
    if not RULES_DIR.is_dir():
        return []
    return sorted([*RULES_DIR.glob("*.yml"), *RULES_DIR.glob("*.yaml")])


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json")) if DASHBOARDS_DIR.is_dir() else []
