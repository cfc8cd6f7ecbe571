"""deploy/kubernetes: both overlays, as every kubectl the tests have renders them (the one on
PATH and Debian's 1.20), validate against the Kubernetes OpenAPI schemas of a current release
(kubernetes-validate, strict), the KEDA and Prometheus Operator CRD schemas (tests/k8s/schemas,
strict) and the kubernetes-models validators (tests/k8s/crd-validators: Gateway API too); and
what they say about the program (its ports, probes, settings, metrics, drain) is what the
program does."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import fields
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
from kubernetes_validate.utils import latest_version

from adapters.grpc import SERVICE_NAME
from adapters.http.app import OPEN_PATHS
from adapters.runpod.metrics import REQUESTS_WAITING, SCALING_METRICS, SLOTS_BUSY
from app.cli import build_parser
from app.settings import Settings
from boson_multimodal.limits import MAX_BATCH
from tests import kube

OVERLAYS = ("single-gpu", "autoscaled")
SCHEMAS = Path(__file__).resolve().parents[1] / "k8s" / "schemas"
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_v1alpha1_scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_v1_servicemonitor.json",
}
GATEWAY = {("gateway.networking.k8s.io/v1", "HTTPRoute"), ("gateway.networking.k8s.io/v1", "GRPCRoute")}
# names the manifests set that are not the program's settings: read by libraries, or only
# expanded into another variable ($(NAME))
EXTERNAL_ENV = {"HF_TOKEN", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


@pytest.fixture(scope="module")
def kubectls():
    found = kube.kubectls()
    assert "1.20" in found, found
    return found


@pytest.fixture(scope="module")
def rendered(kubectls):
    """overlay -> its objects (the newest kubectl's rendering; the test below holds them equal)."""
    newest = max(kubectls, key=lambda v: tuple(int(p) for p in v.rstrip("+").split(".")))
    return {overlay: kube.render(overlay, kubectls[newest]) for overlay in OVERLAYS}


def one(objects, kind, name=None):
    (found,) = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found


def container(objects):
    (server,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return server


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_kubectl_renders_the_same_objects(kubectls, overlay):
    renderings = {version: kube.render(overlay, binary) for version, binary in kubectls.items()}
    as_sets = {v: sorted(json.dumps(o, sort_keys=True) for o in objects) for v, objects in renderings.items()}
    first = next(iter(as_sets.values()))
    assert all(objects == first for objects in as_sets.values()), list(as_sets)
    kinds = sorted(o["kind"] for o in next(iter(renderings.values())))
    expected = ["Deployment", "GRPCRoute", "HTTPRoute", "PersistentVolumeClaim", "PodDisruptionBudget",
                "Secret", "Service", "Service", "ServiceMonitor"]
    assert kinds == sorted(expected + (["ScaledObject"] if overlay == "autoscaled" else []))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_its_schema(rendered, overlay):
    version = latest_version()
    assert tuple(int(p) for p in version.split(".")[:2]) >= (1, 34)
    custom = []
    for obj in rendered[overlay]:
        key = (obj["apiVersion"], obj["kind"])
        if key in CUSTOM:
            schema = json.loads((SCHEMAS / CUSTOM[key]).read_text())
            jsonschema.Draft202012Validator(schema).validate(obj)
            custom.append(obj)
        elif key in GATEWAY:
            custom.append(obj)
        else:
            kubernetes_validate.validate(obj, version, strict=True)
    results = kube.validate_custom(custom)
    assert len(results) == len(custom) and all(r["ok"] for r in results), results


def test_the_validators_refuse_what_is_wrong(rendered):
    """Each validator fails on a broken copy of what passed: none of them passes everything."""
    objects = rendered["autoscaled"]
    deployment = copy.deepcopy(one(objects, "Deployment"))
    deployment["spec"]["template"]["spec"]["terminationGracePeriod"] = 60  # misspelt
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, latest_version(), strict=True)
    scaled = copy.deepcopy(one(objects, "ScaledObject"))
    scaled["spec"]["maxReplicas"] = 8  # KEDA's field is maxReplicaCount
    schema = json.loads((SCHEMAS / CUSTOM[("keda.sh/v1alpha1", "ScaledObject")]).read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(scaled)
    monitor = copy.deepcopy(one(objects, "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["interval"] = 15  # a duration string
    schema = json.loads((SCHEMAS / CUSTOM[("monitoring.coreos.com/v1", "ServiceMonitor")]).read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate(monitor)
    route = copy.deepcopy(one(objects, "HTTPRoute"))
    route["spec"]["rules"][0]["matches"][0]["path"]["type"] = "Glob"
    grpc_route = copy.deepcopy(one(objects, "GRPCRoute"))
    grpc_route["spec"]["rules"][0]["backendRefs"][0]["port"] = "grpc"
    results = kube.validate_custom([route, grpc_route])
    assert [r["ok"] for r in results] == [False, False], results


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_and_probes_are_the_programs(rendered, overlay):
    objects = rendered[overlay]
    server = container(objects)
    args = build_parser().parse_args(server["args"][1:])
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert args.server == "http" and args.host == "0.0.0.0"
    assert ports == {"http": args.port, "grpc": args.grpc_port}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = server[probe]["httpGet"]
        assert get["port"] in ports and get["path"] in OPEN_PATHS  # probes carry no API key
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert server["livenessProbe"]["httpGet"]["path"] == "/health"
    for service in (o for o in objects if o["kind"] == "Service"):
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports and ports[port["targetPort"]] == port["port"]
    headless = one(objects, "Service", "higgs-tts-grpc")
    assert headless["spec"]["clusterIP"] == "None" and [p["name"] for p in headless["spec"]["ports"]] == ["grpc"]
    grpc_route = one(objects, "GRPCRoute")
    assert grpc_route["spec"]["rules"][0]["matches"][0]["method"]["service"] == SERVICE_NAME
    for route in (one(objects, "GRPCRoute"), one(objects, "HTTPRoute")):
        for ref in route["spec"]["rules"][0]["backendRefs"]:
            service = one(objects, "Service", ref["name"])
            assert ref["port"] in [p["port"] for p in service["spec"]["ports"]]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_a_setting_and_every_secret_key_exists(rendered, overlay):
    objects = rendered[overlay]
    settings = {name for f in fields(Settings) for name in f.metadata.get("env", ())}
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    secret = one(objects, "Secret")
    for c in pod["containers"] + pod["initContainers"]:
        env = c.get("env", [])
        expanded = {m for e in env for m in re.findall(r"\$\((\w+)\)", e.get("value", ""))}
        for e in env:
            assert e["name"] in settings | EXTERNAL_ENV | expanded, e["name"]
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == secret["metadata"]["name"]
                assert ref.get("optional") or ref["key"] in secret["stringData"], ref
        defined = [e["name"] for e in env]
        for name in expanded:  # $(NAME) expands only variables defined before it
            assert name in defined, name
    values = {e["name"]: e.get("value") for e in container(objects)["env"]}
    Settings.from_env({k: v for k, v in values.items() if v is not None and "$(" not in v})  # they parse
    assert values["MODEL_PATH"].startswith("hf://") and values["HF_HUB_CACHE"].startswith("/models/")
    init = pod["initContainers"][0]
    assert "higgs-tts download --cache /models/hub" in " ".join(init["command"])
    monitor = one(objects, "ServiceMonitor")
    credentials = monitor["spec"]["endpoints"][0]["authorization"]["credentials"]
    assert credentials["key"] in secret["stringData"] and "$(SCRAPE_KEY)" in values["HIGGS_API_KEYS"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_grace_period_covers_the_drain(rendered, overlay):
    objects = rendered[overlay]
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    values = {e["name"]: e.get("value") for e in container(objects)["env"]}
    drain = Settings.from_env({"HIGGS_DRAIN_SECONDS": values["HIGGS_DRAIN_SECONDS"]}).drain_seconds
    pre_stop = int(container(objects)["lifecycle"]["preStop"]["exec"]["command"][-1])
    stopping = 10  # the requests the drain stops end within a decode step; the servers close in 5
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + stopping
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == one(objects, "Deployment")["spec"]["selector"]


def test_the_autoscaler_reads_the_scaling_metrics(rendered):
    objects = rendered["autoscaled"]
    scaled = one(objects, "ScaledObject")
    deployment = one(objects, "Deployment")
    assert scaled["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert "replicas" not in deployment["spec"]  # the autoscaler's to set
    (trigger,) = scaled["spec"]["triggers"]
    query = trigger["metadata"]["query"]
    used = set(re.findall(r"higgs_tts_\w+", query))
    assert used == {REQUESTS_WAITING, SLOTS_BUSY} and used <= set(SCALING_METRICS)
    assert trigger["metricType"] == "AverageValue"  # per replica
    values = {e["name"]: e.get("value") for e in container(objects)["env"]}
    slots = int(values["HIGGS_MAX_BATCH"])
    assert slots == MAX_BATCH and 0 < float(trigger["metadata"]["threshold"]) <= slots
    service = one(objects, "Service", "higgs-tts")
    assert f'service="{service["metadata"]["name"]}"' in query  # the label Prometheus gives the scraped service
    monitor = one(objects, "ServiceMonitor")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert one(objects, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]
