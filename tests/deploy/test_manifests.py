"""Deployment files: strict YAML everywhere, the compose stack, and the rules and dashboards.

Compose files are validated with the compose-spec parser (PyPI ``compose-spec``, the Rust
``compose_spec`` crate: unknown keys and wrong types are errors) after compose's own variable
interpolation, plus ``docker compose config`` where the compose plugin is installed; then
cross-checked against the saewatch settings, the CLI, the Dockerfiles, Prometheus' rule files
and Grafana's provisioning. Kubernetes manifests: test_k8s_manifests.py; Dockerfiles:
test_dockerfiles.py.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from _deploy_support import (
    COMPOSE_DIR,
    DASHBOARDS_DIR,
    DOCKER_DIR,
    K8S_DIR,
    NON_SETTINGS_ENV,
    ROOT,
    check_cli,
    dashboard_files,
    dockerfile_env,
    env_to_path,
    interpolate,
    load_one,
    load_yaml,
    parse_dockerfile,
    rule_files,
    settings_env_paths,
    yaml_paths,
)

from saewatch.config import load_settings

WEB_PORT = 9108
ALL_YAML = sorted(
    p
    for folder in (COMPOSE_DIR, K8S_DIR, DOCKER_DIR)
    for p in folder.rglob("*.y*ml")
    if p.is_file()
)


def _image_env(dockerfile: str) -> dict[str, str]:
    return dockerfile_env(parse_dockerfile((DOCKER_DIR / dockerfile).read_text()))


def _settings_for(config: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """load_settings as the container sees it: its config file plus its environment."""
    for name in [n for n in os.environ if n.startswith("SAEWATCH_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings(config)


def _check_env_names(names: list[str], where: str) -> None:
    known = settings_env_paths()
    for name in names:
        if name.startswith("SAEWATCH_") and name not in NON_SETTINGS_ENV:
            assert env_to_path(name) in known, f"{where}: {name} is no saewatch setting"


def _check_not_shadowed(config: Path, env: dict[str, str]) -> None:
    """A key set in the file and also by environment would be silently ignored."""
    from_env = {
        env_to_path(v) for v in env if v.startswith("SAEWATCH_") and v not in NON_SETTINGS_ENV
    }
    shadowed = sorted(from_env & set(yaml_paths(load_one(config))))
    assert not shadowed, f"{config.name} sets {shadowed}, but the environment overrides them"


# ---------------------------------------------------------------- every file


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_is_strict(path: Path) -> None:
    """Parses, no duplicate keys, no empty file."""
    assert load_yaml(path), f"{path} holds no YAML document"


def test_deploy_tree_has_the_expected_files() -> None:
    for rel in [
        "docker/Dockerfile.cpu",
        "docker/Dockerfile.cuda",
        "compose/compose.yaml",
        "compose/compose.gpu.yaml",
        "compose/prometheus.yml",
        "k8s/base/kustomization.yaml",
        "k8s/monitoring/servicemonitor.yaml",
        "README.md",
    ]:
        assert (ROOT / "deploy" / rel).is_file(), rel
    assert (ROOT / ".dockerignore").is_file()


# ---------------------------------------------------------------- compose


def _compose(name: str = "compose.yaml") -> dict[str, Any]:
    return interpolate(load_one(COMPOSE_DIR / name))


def _merged_compose() -> dict[str, Any]:
    """compose.yaml with compose.gpu.yaml on top (mappings merge, the override's scalars win)."""

    def merge(a: Any, b: Any) -> Any:
        if isinstance(a, dict) and isinstance(b, dict):
            return {
                k: merge(a[k], b[k]) if k in a and k in b else b.get(k, a.get(k)) for k in a | b
            }
        return b

    return merge(_compose(), _compose("compose.gpu.yaml"))


@pytest.mark.parametrize("name", ["compose.yaml", "compose.gpu.yaml", "merged"])
def test_compose_spec_validation(name: str) -> None:
    from compose_spec.compose_spec import PyCompose

    data = _merged_compose() if name == "merged" else _compose(name)
    project = PyCompose.from_dict(json.loads(json.dumps(data)))
    project.validate()


def test_compose_spec_validator_rejects_mistakes() -> None:
    """The validator is strict: a misspelt key, a wrong type and a missing config all fail."""
    from compose_spec.compose_spec import PyCompose

    good = _compose()
    mistakes = [
        ("read_onl", True),
        ("read_only", "yes"),
        ("configs", [{"source": "missing", "target": "/x"}]),
    ]
    for key, value in mistakes:
        data = json.loads(json.dumps(good))
        data["services"]["saewatch-aggregator"][key] = value
        with pytest.raises(ValueError):
            PyCompose.from_dict(data).validate()


@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"]])
def test_docker_compose_config(files: list[str]) -> None:
    if (shutil.which("docker") is None
            or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode):
        pytest.fail("the docker compose plugin is not installed: run `make system-deps` "
                    "(deploy/tools/install-validators.sh)", pytrace=False)
    cmd = ["docker", "compose", *[a for f in files for a in ("-f", f)], "config", "-q"]
    result = subprocess.run(cmd, cwd=COMPOSE_DIR, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_compose_references_resolve() -> None:
    data = _merged_compose()
    services = data["services"]
    for name, svc in services.items():
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
        for mount in svc.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                host = (COMPOSE_DIR / source).resolve()
                if host.is_relative_to(DASHBOARDS_DIR) or "prometheus/rules" in source:
                    continue  # other owners' files: see the rules/dashboards tests
                assert host.exists(), f"{name}: bind mount {source} does not exist"
            else:
                assert source in data["volumes"], f"{name}: named volume {source} undeclared"
    for config in data["configs"].values():
        assert (COMPOSE_DIR / config["file"]).is_file()


@pytest.mark.parametrize("role", ["encoder", "aggregator"])
def test_compose_saewatch_service(role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = _compose()["services"][f"saewatch-{role}"]
    command = svc["command"]
    assert command[0] == {"encoder": "encode", "aggregator": "aggregate"}[role]
    config_arg = next(a for a in command if a.startswith("--config.file="))
    target = config_arg.split("=", 1)[1]
    (mounted,) = [c for c in svc["configs"] if c["target"] == target]
    source = COMPOSE_DIR / _compose()["configs"][mounted["source"]]["file"]
    env = {**_image_env("Dockerfile.cpu"), **svc.get("environment", {})}
    _check_env_names(list(env), f"compose saewatch-{role}")
    gpu_env = {
        **_image_env("Dockerfile.cuda"),
        **_merged_compose()["services"][f"saewatch-{role}"].get("environment", {}),
    }
    for environment in (env, gpu_env):
        _check_not_shadowed(source, environment)
    settings = _settings_for(source, env, monkeypatch)
    assert settings.web.host_port == ("0.0.0.0", WEB_PORT)
    assert settings.kafka.bootstrap_servers == ["kafka:19092"]
    assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in svc["security_opt"]
    assert svc["deploy"]["resources"]["limits"]["memory"]
    if role == "encoder":
        assert svc["deploy"]["replicas"] == 2
    else:
        assert svc["deploy"]["replicas"] == 1
        snapshot_mount = [v for v in svc["volumes"] if v.startswith("aggregator-snapshots:")]
        assert snapshot_mount == [f"aggregator-snapshots:{settings.state.snapshot_dir}"]
    check_cli(command)


def test_compose_topics_match_config() -> None:
    init = "\n".join(_compose()["services"]["kafka-init"]["command"])
    settings = load_settings(COMPOSE_DIR / "saewatch.yaml")
    created = set(re.findall(r"--topic (\S+) --partitions", init))
    assert created == {
        settings.kafka.topic,
        settings.kafka.features_topic,
        settings.kafka.dlq_topic_name,
    }
    partitions = int(re.search(rf"--topic {settings.kafka.topic} --partitions (\d+)", init)[1])
    assert partitions >= _compose()["services"]["saewatch-encoder"]["deploy"]["replicas"]


def test_compose_prometheus_scrapes_both_roles() -> None:
    prom = load_one(COMPOSE_DIR / "prometheus.yml")
    jobs = {job["job_name"]: job for job in prom["scrape_configs"]}
    services = _compose()["services"]
    dns = jobs["saewatch-encoder"]["dns_sd_configs"][0]
    assert dns["names"] == ["saewatch-encoder"] and dns["port"] == WEB_PORT
    assert jobs["saewatch-aggregator"]["static_configs"][0]["targets"] == [
        f"saewatch-aggregator:{WEB_PORT}"
    ]
    assert {"saewatch-encoder", "saewatch-aggregator"} <= set(services)
    mounts = dict(m.split(":")[:2] for m in services["prometheus"]["volumes"])
    assert mounts["../prometheus/rules"] == "/etc/prometheus/rules"
    assert all(r.startswith("/etc/prometheus/rules/") for r in prom["rule_files"])
    assert mounts["./prometheus.yml"] == "/etc/prometheus/prometheus.yml"


def _promtool_check(path: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed: run `make system-deps`", pytrace=False)
    return subprocess.run(
        ["promtool", "check", "config", "--syntax-only", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "path", [COMPOSE_DIR / "prometheus.yml", K8S_DIR / "monitoring" / "prometheus-scrape.yaml"]
)
def test_promtool_accepts_scrape_config(path: Path, tmp_path: Path) -> None:
    if "kubernetes_sd_configs" in path.read_text():
        probe = tmp_path / "probe.yml"
        probe.write_text(
            "scrape_configs:\n  - job_name: p\n    kubernetes_sd_configs: [{role: pod}]\n"
        )
        checked = _promtool_check(probe)
        if "kubernetes_sd_configs not found" in checked.stdout + checked.stderr:
            pytest.fail(f"{shutil.which('promtool')} is built without Kubernetes service discovery "
                        "(Debian's): run `make system-deps` (deploy/tools/install-validators.sh "
                        "builds one)", pytrace=False)
    result = _promtool_check(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_datasource_and_dashboard_mounts() -> None:
    grafana = _compose()["services"]["grafana"]
    mounts = dict(m.split(":")[:2] for m in grafana["volumes"])
    ds = load_one(COMPOSE_DIR / "grafana" / "datasources" / "prometheus.yaml")
    (source,) = ds["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    assert mounts["./grafana/datasources"] == "/etc/grafana/provisioning/datasources"
    assert mounts["../../dashboards/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["../../dashboards"] == "/var/lib/grafana/dashboards"


# ---------------------------------------------------------------- rules and dashboards
OUR_JOBS = ["saewatch-encoder", "saewatch-aggregator"]


def test_prometheus_loads_the_project_rules() -> None:
    files = rule_files()
    if not files:
        pytest.skip("deploy/prometheus/rules/ has no rule files yet (written under another issue)")
    patterns = load_one(COMPOSE_DIR / "prometheus.yml")["rule_files"]
    for path in files:
        in_container = f"/etc/prometheus/rules/{path.name}"
        assert any(fnmatch.fnmatch(in_container, p) for p in patterns), path.name
        assert load_one(path)["groups"], f"{path.name} has no rule groups"


def test_rule_job_matchers_match_our_job_names() -> None:
    """A rule that filters on a job name this stack never produces would never fire."""
    files = rule_files()
    if not files:
        pytest.skip("deploy/prometheus/rules/ has no rule files yet (written under another issue)")
    for path in files:
        for group in load_one(path)["groups"]:
            for rule in group["rules"]:
                for op, value in re.findall(r'\bjob\s*(=~|!~|!=|=)\s*"([^"]*)"', str(rule["expr"])):
                    if op == "=":
                        assert value in OUR_JOBS, f"{path.name}: job={value!r}"
                    elif op == "=~":
                        assert any(re.fullmatch(value, job) for job in OUR_JOBS), value


def test_promtool_accepts_compose_config_with_rules(tmp_path: Path) -> None:
    """The compose Prometheus config with the rule files where the container mounts them."""
    if not rule_files():
        pytest.skip("deploy/prometheus/rules/ has no rule files yet (written under another issue)")
    config = load_one(COMPOSE_DIR / "prometheus.yml")
    config["rule_files"] = [str(p) for p in rule_files()]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        ["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _dashboard_providers() -> list[dict[str, Any]]:
    folder = DASHBOARDS_DIR / "provisioning" / "dashboards"
    files = sorted(folder.glob("*.y*ml")) if folder.is_dir() else []
    return [p for f in files for p in load_one(f).get("providers", [])]


def test_grafana_provisioning_matches_compose_mounts() -> None:
    providers = _dashboard_providers()
    if not providers or not dashboard_files():
        pytest.skip("dashboards/ and its provisioning do not exist yet (another issue)")
    grafana = _compose()["services"]["grafana"]
    mounts = dict(m.split(":")[:2] for m in grafana["volumes"])
    for provider in providers:
        assert provider["options"]["path"] == mounts["../../dashboards"], provider["name"]
    # The compose data source replaces the project's (whose URL is for a local Prometheus) and
    # must keep its uid, which the dashboards' datasource variable defaults to.
    project_ds = DASHBOARDS_DIR / "provisioning" / "datasources"
    uids = {d["uid"] for f in project_ds.glob("*.y*ml") for d in load_one(f)["datasources"]}
    ours = load_one(COMPOSE_DIR / "grafana" / "datasources" / "prometheus.yaml")["datasources"]
    assert {d["uid"] for d in ours} == uids


def test_dashboards_reference_the_provisioned_datasource() -> None:
    files = dashboard_files()
    if not files:
        pytest.skip("dashboards/*.json do not exist yet (another issue)")
    ours = {
        d["uid"]
        for d in load_one(COMPOSE_DIR / "grafana/datasources/prometheus.yaml")["datasources"]
    }
    for path in files:
        text = path.read_text()
        dashboard = json.loads(text)
        assert dashboard.get("uid"), f"{path.name}: needs a fixed uid to be provisioned"
        for uid in re.findall(r'"datasource"\s*:\s*\{[^}]*"uid"\s*:\s*"([^"]+)"', text):
            assert uid.startswith("$") or uid in ours, f"{path.name}: datasource uid {uid}"
        for var in dashboard.get("templating", {}).get("list", []):
            if var.get("type") == "datasource" and isinstance(var.get("current"), dict):
                value = var["current"].get("value")
                assert value in (None, "", *ours), f"{path.name}: datasource default {value}"
