"""Kubernetes manifests (deploy/k8s): strict schema validation and cross-checks, offline.

Each kustomization is rendered the way ``kustomize build`` would for the features it uses
(namespace, labels, images, configMapGenerator); where the ``kustomize`` binary is installed its
real output is validated too. Core objects go through ``kubernetes-validate``'s strict schemas
(unknown fields fail) for the oldest supported Kubernetes (1.31) and the newest bundled one;
monitoring.coreos.com objects through strict structural schemas in tests/deploy/schemas/.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from _deploy_support import (
    DOCKER_DIR,
    K8S_DIR,
    NON_SETTINGS_ENV,
    ROOT,
    check_cli,
    dashboard_files,
    dockerfile_env,
    env_to_path,
    load_one,
    load_yaml,
    parse_dockerfile,
    rule_files,
    settings_env_paths,
    yaml_paths,
)

from saewatch.config import load_settings

KUBE_VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]
BASE = K8S_DIR / "base"
MONITORING = K8S_DIR / "monitoring"
MONITORING_CONFIG = K8S_DIR / "monitoring-config"
KUSTOMIZATIONS = [BASE, MONITORING, MONITORING_CONFIG]
SCHEMAS = Path(__file__).parent / "schemas"
WEB_PORT = 9108
IMAGE_DOCKERFILE = {"saewatch-cpu": "Dockerfile.cpu", "saewatch-cuda": "Dockerfile.cuda"}
ROLE_OF = {"saewatch-encoder": "encode", "saewatch-aggregator": "aggregate"}
# Files in a kustomization folder that are not Kubernetes objects.
NOT_RESOURCES = {"kustomization.yaml", "saewatch.yaml", "prometheus-scrape.yaml"}


def render(kdir: Path) -> list[dict[str, Any]]:
    """What ``kustomize build kdir`` yields, for the kustomize features these folders use."""
    kust = load_one(kdir / "kustomization.yaml")
    resources = kust.get("resources", [])
    docs = [copy.deepcopy(d) for res in resources for d in load_yaml(kdir / res)]
    for gen in kust.get("configMapGenerator", []):
        data = {Path(f).name: (kdir / f).read_text() for f in gen["files"]}
        meta = {"name": gen["name"], **copy.deepcopy(gen.get("options", {}))}
        docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    images = {
        i["name"]: f"{i.get('newName', i['name'])}:{i['newTag']}" for i in kust.get("images", [])
    }
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] != "Namespace" and "namespace" in kust:
            meta["namespace"] = kust["namespace"]
        for label_set in kust.get("labels", []):
            meta.setdefault("labels", {}).update(label_set["pairs"])
        for container in _containers(doc):
            assert container["image"] in images, f"image {container['image']} not in `images`"
            container["image"] = images[container["image"]]
    return docs


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc["kind"] not in ("Deployment", "StatefulSet"):
        return []
    return doc["spec"]["template"]["spec"]["containers"]


def _objects(kind: str) -> dict[str, dict[str, Any]]:
    docs = [*render(BASE), *render(MONITORING)]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _workloads() -> dict[str, dict[str, Any]]:
    return {**_objects("Deployment"), **_objects("StatefulSet")}


def _validate(doc: dict[str, Any], version: str) -> None:
    group = doc["apiVersion"].split("/")[0]
    if group == "monitoring.coreos.com":
        schema = json.loads((SCHEMAS / f"{doc['kind'].lower()}.json").read_text())
        jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


def _pod_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment with stand-ins for values from Secrets and the API."""
    env = {}
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", f"from-{var['name'].lower()}")
    return env


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomization_lists_every_manifest(kdir: Path) -> None:
    kust = load_one(kdir / "kustomization.yaml")
    on_disk = {p.name for p in kdir.glob("*.y*ml")} - NOT_RESOURCES
    assert set(kust.get("resources", [])) == on_disk
    for gen in kust.get("configMapGenerator", []):
        missing = [f for f in gen["files"] if not (kdir / f).is_file()]
        assert not missing, f"{kdir.name}: configMapGenerator {gen['name']} lacks {missing}"


def test_monitoring_config_carries_every_dashboard_and_rule_file() -> None:
    """A new dashboard or rule file must be added to the generator, or k8s users never get it."""
    if not dashboard_files() or not rule_files():
        pytest.skip("dashboards/*.json or deploy/prometheus/rules/*.yml do not exist yet")
    gens = {
        g["name"]: {(MONITORING_CONFIG / f).resolve() for f in g["files"]}
        for g in load_one(MONITORING_CONFIG / "kustomization.yaml")["configMapGenerator"]
    }
    assert gens["saewatch-dashboards"] == set(dashboard_files())
    assert gens["saewatch-prometheus-rules"] == set(rule_files())
    dashboards = _objects_in(MONITORING_CONFIG, "ConfigMap")["saewatch-dashboards"]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    for name, text in dashboards["data"].items():
        assert json.loads(text)["uid"], f"{name}: a provisioned dashboard needs a fixed uid"


def _objects_in(kdir: Path, kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in render(kdir) if d["kind"] == kind}


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_k8s_schema(kdir: Path, version: str) -> None:
    if kdir == MONITORING_CONFIG and not (dashboard_files() and rule_files()):
        pytest.skip("dashboards/*.json or deploy/prometheus/rules/*.yml do not exist yet")
    docs = render(kdir)
    assert docs
    for doc in docs:
        _validate(doc, version)


def test_k8s_validators_reject_mistakes() -> None:
    deployment = _objects("Deployment")["saewatch-encoder"]
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFs"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)
    bad = copy.deepcopy(deployment)
    bad["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)
    monitor = copy.deepcopy(_objects("ServiceMonitor")["saewatch"])
    monitor["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        _validate(monitor, KUBE_VERSIONS[0])


@pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kustomize_build(kdir: Path) -> None:
    """The real kustomize agrees with render() and its output validates."""
    kustomize = shutil.which("kustomize")
    if kustomize is None:
        pytest.fail("kustomize is not installed: run `make system-deps` "
                    "(deploy/tools/install-validators.sh)", pytrace=False)
    if kdir == MONITORING_CONFIG and not (dashboard_files() and rule_files()):
        pytest.skip("dashboards/*.json or deploy/prometheus/rules/*.yml do not exist yet")
    cmd = [kustomize, "build", str(kdir)]
    if kdir == MONITORING_CONFIG:
        cmd[2:2] = ["--load-restrictor", "LoadRestrictionsNone"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    built = [d for d in yaml.safe_load_all(out) if d]
    for doc in built:
        _validate(doc, KUBE_VERSIONS[-1])
    # kustomize appends a content hash to generated ConfigMap names (unless told not to) and
    # rewrites references to them; undo that to compare with render().
    options = load_one(kdir / "kustomization.yaml").get("generatorOptions", {})
    if not options.get("disableNameSuffixHash", False):
        text = json.dumps(built)
        for doc in built:
            if doc["kind"] == "ConfigMap":
                hashed = doc["metadata"]["name"]
                text = text.replace(f'"{hashed}"', f'"{hashed.rsplit("-", 1)[0]}"')
        built = json.loads(text)
    mine = {(d["kind"], d["metadata"]["name"]): d for d in render(kdir)}
    assert {(d["kind"], d["metadata"]["name"]) for d in built} == set(mine)
    for doc in built:
        assert doc == mine[doc["kind"], doc["metadata"]["name"]], (
            f"render() and kustomize differ on {doc['kind']} {doc['metadata']['name']}"
        )


# ---------------------------------------------------------------- workloads


@pytest.mark.parametrize("name", sorted(ROLE_OF))
def test_workload_hardening(name: str) -> None:
    workload = _workloads()[name]
    pod = workload["spec"]["template"]["spec"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= (
        workload["spec"]["template"]["metadata"]["labels"].items()
    )
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts, "read-only root: /tmp must be a volume"


@pytest.mark.parametrize("name", sorted(ROLE_OF))
def test_workload_probes_ports_and_args(name: str) -> None:
    workload = _workloads()[name]
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http-metrics": WEB_PORT}
    expected = {
        "startupProbe": "/-/healthy",
        "livenessProbe": "/-/healthy",
        "readinessProbe": "/-/ready",
    }
    for probe, path in expected.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "http-metrics"}, probe
    args = container["args"]
    assert args[0] == ROLE_OF[name]
    check_cli(args)


@pytest.mark.parametrize("name", sorted(ROLE_OF))
def test_config_is_valid_settings(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap's YAML, as the container reads it with the image's and pod's environment."""
    workload = _workloads()[name]
    pod = workload["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config_arg = next(a for a in container["args"] if a.startswith("--config.file="))
    config_path = Path(config_arg.split("=", 1)[1])
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == str(config_path.parent)]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    configmap = _objects("ConfigMap")[volume["configMap"]["name"]]
    local = BASE / config_path.name
    assert configmap["data"][config_path.name] == local.read_text()

    image_env = dockerfile_env(
        parse_dockerfile((DOCKER_DIR / IMAGE_DOCKERFILE[_source_image(container)]).read_text())
    )
    env = {**image_env, **_pod_env(container)}
    known = settings_env_paths()
    for var in env:
        if var.startswith("SAEWATCH_") and var not in NON_SETTINGS_ENV:
            assert env_to_path(var) in known, f"{name}: {var} is no saewatch setting"
    # A key set in the file but also by environment would be silently ignored.
    from_env = {
        env_to_path(v) for v in env if v.startswith("SAEWATCH_") and v not in NON_SETTINGS_ENV
    }
    shadowed = sorted(from_env & set(yaml_paths(load_one(local))))
    assert not shadowed, f"{local.name} sets {shadowed}, but the environment overrides them"

    for var in [v for v in os.environ if v.startswith("SAEWATCH_")]:
        monkeypatch.delenv(var)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = load_settings(local)
    assert settings.web.host_port == ("0.0.0.0", WEB_PORT)
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.kafka.password() == "from-saewatch_kafka__sasl_password"
    assert settings.kafka.client_id == "from-saewatch_kafka__client_id"
    if name == "saewatch-encoder":
        assert settings.encode.device == "cuda"


def _source_image(container: dict[str, Any]) -> str:
    raw = {
        c["name"]: c["image"]
        for res in load_one(BASE / "kustomization.yaml")["resources"]
        for d in load_yaml(BASE / res)
        for c in _containers(d)
    }
    return raw[container["name"]]


def test_encoder_gets_one_gpu_each() -> None:
    encoder = _workloads()["saewatch-encoder"]
    (container,) = encoder["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert _source_image(container) == "saewatch-cuda"
    assert encoder["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    anti = encoder["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert _matches(
        term["podAffinityTerm"]["labelSelector"]["matchLabels"],
        encoder["spec"]["template"]["metadata"]["labels"],
    )


def test_aggregator_owns_state_on_a_volume() -> None:
    agg = _workloads()["saewatch-aggregator"]
    spec = agg["spec"]
    assert spec["replicas"] == 1
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 120
    (claim,) = spec["volumeClaimTemplates"]
    (container,) = spec["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    snapshot_dir = _pod_env(container)["SAEWATCH_STATE__SNAPSHOT_DIR"]
    assert mounts[claim["metadata"]["name"]] == snapshot_dir
    image_env = dockerfile_env(parse_dockerfile((DOCKER_DIR / "Dockerfile.cpu").read_text()))
    assert image_env["SAEWATCH_STATE__SNAPSHOT_DIR"] == snapshot_dir
    governing = _objects("Service")[spec["serviceName"]]
    assert governing["spec"]["clusterIP"] == "None"


# ---------------------------------------------------------------- services and monitoring


def test_services_select_pods_and_ports() -> None:
    workloads = _workloads()
    for name, svc in _objects("Service").items():
        selected = [
            w
            for w in workloads.values()
            if _matches(svc["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(selected) == 1, f"service {name} selects {len(selected)} workloads"
        (container,) = selected[0]["spec"]["template"]["spec"]["containers"]
        names = {p["name"] for p in container["ports"]}
        assert all(p["targetPort"] in names for p in svc["spec"]["ports"]), name


def test_pdbs_select_their_workload() -> None:
    workloads = _workloads()
    for name, pdb in _objects("PodDisruptionBudget").items():
        labels = workloads[name]["spec"]["template"]["metadata"]["labels"]
        assert _matches(pdb["spec"]["selector"]["matchLabels"], labels), name
        assert pdb["spec"]["maxUnavailable"] == 1


def test_servicemonitor_scrapes_each_role_once() -> None:
    (monitor,) = _objects("ServiceMonitor").values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = sorted(
        name
        for name, svc in _objects("Service").items()
        if _matches(selector, svc["metadata"]["labels"])
        and svc["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    )
    assert scraped == sorted(ROLE_OF), "job names must match the compose stack's"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    for name in scraped:
        ports = {p["name"] for p in _objects("Service")[name]["spec"]["ports"]}
        assert endpoint["port"] in ports


def test_plain_prometheus_scrape_config_matches_services() -> None:
    (job,) = load_one(MONITORING / "prometheus-scrape.yaml")["scrape_configs"]
    keeps = {
        tuple(r["source_labels"]): r["regex"]
        for r in job["relabel_configs"]
        if r.get("action") == "keep"
    }
    label_key = next(
        iter(
            _objects("ServiceMonitor")["saewatch"]["spec"]["selector"]["matchLabels"].keys()
            - {"app.kubernetes.io/name"}
        )
    )
    sd_label = "__meta_kubernetes_service_label_" + "".join(
        c if c.isalnum() else "_" for c in label_key
    )
    assert keeps[(sd_label,)] == "true"
    assert keeps[("__meta_kubernetes_endpoint_port_name",)] == "http-metrics"
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["saewatch"]


def test_prometheusrule_generator() -> None:
    if not rule_files():
        pytest.skip("deploy/prometheus/rules/ has no rule files yet (written under another issue)")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "prometheusrule", MONITORING / "prometheusrule.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    doc = module.build(
        ROOT / "deploy" / "prometheus" / "rules", "saewatch", "saewatch", {"release": "x"}
    )
    _validate(doc, KUBE_VERSIONS[-1])
    source_groups = [g["name"] for p in rule_files() for g in load_one(p)["groups"]]
    assert [g["name"] for g in doc["spec"]["groups"]] == source_groups
