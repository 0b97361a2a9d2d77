"""Monitoring, checked offline: the Grafana dashboard (deploy/grafana/mesh-llm.json) queries only
metrics the services export (docs/METRICS.md, and the llama-server names the worker re-exports)
with labels they carry, and its panels are bound to the data source variable and laid out
without overlap; the compose stack's Prometheus (deploy/prometheus/prometheus.yml) scrapes each
service where it serves /metrics; `--profile monitoring` is a valid compose configuration; the
chart renders the ServiceMonitor and the dashboard's ConfigMap. The Compose binary and helm come
from scripts/deploy-tools.sh, promtool too (from Debian's prometheus package; or PROMTOOL)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from compose import script_output
from helpers import cannot_run_here

pytestmark = pytest.mark.deploy
REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CHART = DEPLOY / "helm" / "mesh-llm"
DASHBOARD = DEPLOY / "grafana" / "mesh-llm.json"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
METRICS_DOC = REPO / "docs" / "METRICS.md"
DATASOURCE = "${datasource}"
ROWS = ["Overview", "Per model latency and throughput", "Per node capacity", "Routing health"]
# llama-server's own `llamacpp:<name>` lines, which the worker re-exports as meshllm_llama_<name>
# (services/worker/metrics.py): server_task_result_metrics::to_metrics() in
# tools/server/server-task.cpp of the pinned llama.cpp (scripts/build-llama.sh). Lines with
# labels (spec_decode_num_accepted_tokens_per_pos_total{position=...}) are not re-exported.
LLAMA_SERVER_METRICS = {
    "prompt_tokens_total",
    "prompt_tokens_cached_total",
    "prompt_seconds_total",
    "tokens_predicted_total",
    "tokens_predicted_seconds_total",
    "n_decode_total",
    "n_tokens_max",
    "spec_decode_num_draft_tokens_total",
    "spec_decode_num_accepted_tokens_total",
    "spec_decode_num_drafts_total",
    "prompt_tokens_seconds",
    "predicted_tokens_seconds",
    "requests_processing",
    "requests_deferred",
    "n_busy_slots_per_decode",
}
LLAMA_LABELS = {"node", "instance", "model"}
# labels Prometheus puts on every series it scrapes
TARGET_LABELS = {"instance", "job"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
METRIC = re.compile(r"meshllm_[a-z_]+")
SELECTOR = re.compile(r"(meshllm_[a-z_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)\s*\(")


# ---- what the services export (docs/METRICS.md)


def documented_metrics() -> dict[str, tuple[str, set[str]]]:
    """Name -> (type, labels), from the table in docs/METRICS.md."""
    metrics = {}
    for line in METRICS_DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`meshllm_[a-z_<>]+`", cells[0]):
            labels = {label.strip() for label in cells[2].split(",") if label.strip()}
            metrics[cells[0].strip("`")] = (cells[1], labels)
    return metrics


def metric_labels(name: str, documented: dict[str, tuple[str, set[str]]]) -> set[str] | None:
    """The labels of the series `name` (as a query names it), or None when no service exports
    it: a documented name, a documented histogram's _bucket/_sum/_count (le on buckets), or
    meshllm_llama_<name> for a name llama-server exports."""
    if name in documented:
        kind, labels = documented[name]
        return None if kind == "histogram" or "<" in name else labels
    for suffix in HISTOGRAM_SUFFIXES:
        stem = name.removesuffix(suffix)
        if stem != name and documented.get(stem, ("",))[0] == "histogram":
            return documented[stem][1] | ({"le"} if suffix == "_bucket" else set())
    if "meshllm_llama_<name>" in documented and name.startswith("meshllm_llama_"):
        if name.removeprefix("meshllm_llama_") in LLAMA_SERVER_METRICS:
            return LLAMA_LABELS
    return None


# ---- the dashboard


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield f"panel {panel.get('title')!r} {target.get('refId')}", target.get("expr", "")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            yield f"variable {variable['name']}", text


def balanced(text: str, start: int) -> str:
    """The text inside the parenthesis that opens at text[start]."""
    depth = 0
    for end in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[end], 0)
        if depth == 0:
            return text[start + 1 : end]
    raise ValueError(f"unbalanced parentheses in {text!r}")


def query_problems(dashboard: dict, documented: dict[str, tuple[str, set[str]]]) -> list[str]:
    """Metric names nobody exports, and labels a metric does not carry (in its selector or in a
    by/without clause over it)."""
    problems = []
    for where, expr in queries(dashboard):
        names = METRIC.findall(expr)
        if not names and where.startswith("panel"):
            problems.append(f"{where}: queries no meshllm_ metric: {expr!r}")
        for name in names:
            if metric_labels(name, documented) is None:
                problems.append(f"{where}: {name} is not exported (docs/METRICS.md)")
        for name, matchers in SELECTOR.findall(expr):
            labels = metric_labels(name, documented)
            for label in MATCHER.findall(matchers):
                if labels is not None and label not in labels | TARGET_LABELS:
                    problems.append(f"{where}: {name} has no label {label!r}")
        for grouping in GROUPING.finditer(expr):
            inside = METRIC.findall(balanced(expr, grouping.end() - 1))
            known = [metric_labels(n, documented) for n in inside]
            if None in known:
                continue  # reported above
            carried = set().union(TARGET_LABELS, *known)  # type: ignore[arg-type]
            for label in (x.strip() for x in grouping.group(1).split(",") if x.strip()):
                if label not in carried:
                    problems.append(f"{where}: grouping by {label!r}, which {inside} lack")
    return problems


def references_variable(datasource: object) -> bool:
    if isinstance(datasource, dict):
        return datasource.get("uid") in (DATASOURCE, "$datasource")
    return datasource in (DATASOURCE, "$datasource")


def layout_problems(dashboard: dict) -> list[str]:
    problems = []
    panels = list(all_panels(dashboard))
    titles = [p.get("title", "") for p in panels]
    problems += [
        f"title {t!r} used twice" for t in sorted({t for t in titles if titles.count(t) > 1})
    ]
    ids = [p.get("id") for p in panels]
    problems += [f"panel id {i} used twice" for i in sorted({i for i in ids if ids.count(i) > 1})]
    for panel in panels:
        if panel["type"] == "row":
            continue
        where = f"panel {panel.get('title')!r}"
        if not references_variable(panel.get("datasource")):
            problems.append(f"{where}: datasource {panel.get('datasource')} is not {DATASOURCE}")
        if not panel.get("targets"):
            problems.append(f"{where}: no query")
        for target in panel.get("targets", []):
            if "datasource" in target and not references_variable(target["datasource"]):
                problems.append(f"{where} {target.get('refId')}: datasource is not {DATASOURCE}")
    boxes = [(p.get("title"), p["gridPos"]) for p in panels]
    for title, box in boxes:
        if box["x"] < 0 or box["y"] < 0 or box["w"] < 1 or box["h"] < 1 or box["x"] + box["w"] > 24:
            problems.append(f"panel {title!r} lies outside the 24-column grid: {box}")
    for i, (title, a) in enumerate(boxes):
        for other, b in boxes[i + 1 :]:
            if (
                a["x"] < b["x"] + b["w"]
                and b["x"] < a["x"] + a["w"]
                and a["y"] < b["y"] + b["h"]
                and b["y"] < a["y"] + a["h"]
            ):
                problems.append(f"panels {title!r} and {other!r} overlap")
    return problems


@pytest.fixture(scope="module")
def documented() -> dict[str, tuple[str, set[str]]]:
    metrics = documented_metrics()
    assert "meshllm_requests_total" in metrics and "meshllm_llama_<name>" in metrics
    return metrics


def test_dashboard_queries_only_metrics_the_services_export(
    documented: dict[str, tuple[str, set[str]]],
) -> None:
    dashboard = load_dashboard()
    assert query_problems(dashboard, documented) == []
    queried = {n for _, expr in queries(dashboard) for n in METRIC.findall(expr)}
    # every row has its content: latency histograms, node capacity and llama-server's own
    for name in (
        "meshllm_request_duration_seconds_bucket",
        "meshllm_time_to_first_token_seconds_bucket",
        "meshllm_inter_token_seconds_bucket",
        "meshllm_device_memory_bytes",
        "meshllm_llama_requests_processing",
        "meshllm_llama_tokens_predicted_total",
        "meshllm_plan_duration_seconds_bucket",
        "meshllm_demand_writes_total",
    ):
        assert name in queried


@pytest.mark.parametrize(
    ("replace", "by", "problem"),
    [
        ("meshllm_requests_total", "meshllm_requests_served_total", "not exported"),
        ("meshllm_requests_total", "meshllm_requests_total_bucket", "not exported"),
        (
            "meshllm_llama_requests_processing",
            "meshllm_llama_kv_cache_usage_ratio",
            "not exported",
        ),
        ("meshllm_demand_writes_total", 'meshllm_demand_writes_total{model=~"$model"}', "label"),
        ("sum by (action)", "sum by (node)", "grouping"),
    ],
    ids=["unknown-name", "counter-as-histogram", "llama-name-not-exported", "label", "grouping"],
)
def test_a_dashboard_querying_what_nobody_exports_fails_the_check(
    documented: dict[str, tuple[str, set[str]]], replace: str, by: str, problem: str
) -> None:
    dashboard = load_dashboard()
    mutated = copy.deepcopy(dashboard)
    changed = 0
    for panel in all_panels(mutated):
        for target in panel.get("targets", []):
            if replace in target.get("expr", "") and not changed:
                target["expr"] = target["expr"].replace(replace, by, 1)
                changed += 1
    assert changed == 1
    problems = query_problems(mutated, documented)
    assert len(problems) == 1 and problem in problems[0], problems


def test_dashboard_panels_use_the_datasource_variable_and_do_not_overlap() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 39 and dashboard["uid"] == "mesh-llm"
    assert layout_problems(dashboard) == []
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["query"]["query"] == "label_values(meshllm_requests_total, model)"
    assert variables["node"]["type"] == "query"
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert rows == ROWS


def test_layout_check_finds_overlaps_shared_titles_and_other_datasources() -> None:
    dashboard = load_dashboard()
    mutated = copy.deepcopy(dashboard)
    first, second = [p for p in mutated["panels"] if p["type"] != "row"][:2]
    second["gridPos"] = dict(first["gridPos"])
    second["title"] = first["title"]
    second["datasource"] = {"type": "prometheus", "uid": "PBFA97CFB590B2093"}
    problems = layout_problems(mutated)
    assert any("overlap" in p for p in problems)
    assert any("used twice" in p for p in problems)
    assert any("is not ${datasource}" in p for p in problems)


def test_the_dashboard_has_one_copy() -> None:
    """deploy/grafana/mesh-llm.json links to the chart's copy (Helm's .Files.Get reads only
    files inside the chart)."""
    assert DASHBOARD.is_symlink()
    assert DASHBOARD.resolve() == (CHART / "dashboards" / "mesh-llm.json").resolve()


# ---- compose: Prometheus and Grafana behind the monitoring profile


@pytest.fixture(scope="session")
def compose_binary() -> Path:
    return Path(script_output("deploy-tools.sh")) / "docker-compose"


def run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, **kwargs)  # type: ignore[call-overload]


def compose_config(
    compose_binary: Path, files: list[str], profile: bool, variables: dict[str, str] | None = None
) -> dict:
    argv = [str(compose_binary)]
    for name in files:
        argv += ["-f", str(DEPLOY / name)]
    if profile:
        argv += ["--profile", "monitoring"]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MESH_")}
    done = run([*argv, "config", "--format", "json"], env={**clean, **(variables or {})})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def monitored(compose_binary: Path) -> dict[str, dict]:
    return compose_config(compose_binary, ["docker-compose.yml"], profile=True)["services"]


def mounts(service: dict) -> dict[str, dict]:
    """Target -> the volume entry, of a service as `compose config` resolves it."""
    return {v["target"]: v for v in service.get("volumes", [])}


@pytest.mark.parametrize(
    "files",
    [["docker-compose.yml"], ["docker-compose.yml", "docker-compose.gpu.yml"]],
    ids=["docker-compose.yml", "docker-compose.yml+docker-compose.gpu.yml"],
)
def test_compose_config_accepts_the_monitoring_profile(
    compose_binary: Path, files: list[str]
) -> None:
    services = compose_config(compose_binary, files, profile=True)["services"]
    assert {"prometheus", "grafana"} <= set(services)
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        assert [p["host_ip"] for p in services[name]["ports"]] == ["127.0.0.1"]
    without = compose_config(compose_binary, files, profile=False)["services"]
    assert not {"prometheus", "grafana"} & set(without)


def scrape_targets() -> list[tuple[str, str, int, dict]]:
    """(job, host, port, scrape config) for every static target of prometheus.yml."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    found = []
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            for target in group["targets"]:
                host, port = target.rsplit(":", 1)
                found.append((job["job_name"], host, int(port), job))
    return found


def test_prometheus_scrapes_every_service_where_it_serves_metrics(
    monitored: dict[str, dict],
) -> None:
    """Each target is a compose service on the port that serves /metrics, reachable from
    another container: the gateway's API port (the image binds it on 0.0.0.0), the others'
    MESH_HTTP_PORT with MESH_PROBE_HOST=0.0.0.0. The gateway's job sends the key file that
    the prometheus service mounts."""
    targets = scrape_targets()
    assert {host for _, host, _, _ in targets} == {"gateway", "scheduler", "registry", "worker"}
    for job, host, port, config in targets:
        assert host in monitored, f"{job}: {host} is no compose service"
        environment = monitored[host]["environment"]
        assert port == int(environment["MESH_HTTP_PORT"]), job
        assert config.get("metrics_path", "/metrics") == "/metrics"
        if host != "gateway":
            assert environment["MESH_PROBE_HOST"] == "0.0.0.0", job
    prometheus = monitored["prometheus"]
    volumes = mounts(prometheus)
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    config_mount = volumes[config_flag.split("=", 1)[1]]
    assert Path(config_mount["source"]) == PROMETHEUS_CONFIG and config_mount["read_only"]
    [gateway_job] = [c for j, host, _, c in targets if host == "gateway"]
    key_mount = volumes[gateway_job["authorization"]["credentials_file"]]
    assert Path(key_mount["source"]).is_file() and key_mount["read_only"]


def test_the_api_key_file_for_prometheus_is_a_setting(compose_binary: Path, tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-test\n")
    services = compose_config(
        compose_binary,
        ["docker-compose.yml"],
        profile=True,
        variables={"MESH_METRICS_KEY_FILE": str(key), "MESH_API_KEYS": "sk-test"},
    )["services"]
    assert mounts(services["prometheus"])["/etc/prometheus/gateway-api-key"]["source"] == str(key)


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(
    monitored: dict[str, dict],
) -> None:
    grafana = monitored["grafana"]
    volumes = mounts(grafana)
    provisioning = DEPLOY / "grafana" / "provisioning"
    for kind in ("datasources", "dashboards"):
        mount = volumes[f"/etc/grafana/provisioning/{kind}"]
        assert Path(mount["source"]) == provisioning / kind and mount["read_only"]
    [source] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["isDefault"]
    assert source["url"] == "http://prometheus:9090" and "prometheus" in monitored
    [provider] = yaml.safe_load((provisioning / "dashboards" / "mesh-llm.yml").read_text())[
        "providers"
    ]
    folder = provider["options"]["path"]
    dashboards = {t: v for t, v in volumes.items() if t.startswith(folder + "/")}
    assert [Path(v["source"]).resolve() for v in dashboards.values()] == [DASHBOARD.resolve()]
    environment = grafana["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert environment["GF_SECURITY_ADMIN_PASSWORD"]
    assert environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] in dashboards


@pytest.fixture(scope="module")
def promtool() -> str:
    unpacked = Path(script_output("deploy-tools.sh")) / "promtool"
    found = os.environ.get("PROMTOOL") or shutil.which("promtool")
    found = found or (str(unpacked) if unpacked.exists() else "")
    if not found:
        cannot_run_here(
            "promtool is not here (scripts/deploy-tools.sh unpacks it from Debian's "
            "`prometheus` package where apt-get can fetch it; or set PROMTOOL)"
        )
    return found


def test_promtool_accepts_the_prometheus_config(
    promtool: str, monitored: dict[str, dict], tmp_path: Path
) -> None:
    """With the files the prometheus service mounts put back at their sources here."""
    text = PROMETHEUS_CONFIG.read_text()
    for target, mount in mounts(monitored["prometheus"]).items():
        if mount["type"] == "bind":
            text = text.replace(target, mount["source"])
    config = tmp_path / "prometheus.yml"
    config.write_text(text)
    done = run([promtool, "check", "config", str(config)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_parses_every_dashboard_query(promtool: str, tmp_path: Path) -> None:
    """Each query as a recording rule, Grafana's variables replaced by what they expand to."""
    rules = []
    for i, (_, expr) in enumerate(queries(load_dashboard())):
        if expr.startswith("label_values("):
            continue
        expr = expr.replace("$model", ".*").replace("$node", ".*")
        rules.append({"record": f"dashboard:query{i}", "expr": expr})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run([promtool, "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr


# ---- the Helm chart: ServiceMonitor and the dashboard's ConfigMap

BOTH = ["--set", "metrics.serviceMonitor.enabled=true,metrics.grafanaDashboard.enabled=true"]


@pytest.fixture(scope="session")
def helm() -> str:
    return str(Path(script_output("deploy-tools.sh")) / "helm")


def render(helm: str, *args: str) -> list[dict]:
    done = run([helm, "template", "t", str(CHART), *args])
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_helm_lint_with_monitoring(helm: str) -> None:
    done = run([helm, "lint", "--strict", str(CHART), *BOTH])
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("gpus", "worker_ports"), [(1, {9341}), (3, {9341, 9441, 9541})])
def test_helm_renders_a_service_monitor_reaching_every_service(
    helm: str, gpus: int, worker_ports: set[int]
) -> None:
    """No CRD schema is at hand offline (kubernetes-validate skips the kind), so the chain is
    checked here: the ServiceMonitor's selector picks Services whose named ports are its
    endpoints' ports, and each such port points at a named container port of the pods —
    every GPU's worker's included."""
    docs = render(helm, *BOTH, "--set", f"worker.gpus={gpus}")
    [monitor] = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [
        d
        for d in docs
        if d["kind"] == "Service" and matches(selector, d["metadata"].get("labels", {}))
    ]
    components = {s["metadata"]["labels"]["app.kubernetes.io/component"] for s in services}
    assert components == {"gateway", "scheduler", "registry", "worker"}
    endpoints = {e["port"]: e for e in monitor["spec"]["endpoints"]}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]
    scraped = set()
    for service in services:
        pods = [
            w["spec"]["template"]
            for w in workloads
            if matches(service["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
        ]
        assert pods, service["metadata"]["name"]
        for port in service["spec"]["ports"]:
            assert port["name"] in endpoints, (service["metadata"]["name"], port["name"])
            for pod in pods:
                names = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
                assert port["targetPort"] in names, (service["metadata"]["name"], port)
            scraped.add(port["port"])
    assert scraped == {9337, 9351, 9361} | worker_ports
    for endpoint in endpoints.values():
        assert endpoint["path"] == "/metrics" and endpoint["honorLabels"] is True
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"])
    secret = endpoints["api-metrics"]["authorization"]["credentials"]
    [keys] = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == secret["name"]]
    assert secret["key"] in keys["data"]
    assert not any("authorization" in e for p, e in endpoints.items() if p != "api-metrics")


def test_service_monitor_options(helm: str) -> None:
    docs = render(
        helm,
        *BOTH,
        "--set",
        "gateway.allowNoApiKey=true,metrics.serviceMonitor.labels.release=kps",
    )
    [monitor] = [d for d in docs if d["kind"] == "ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert not any("authorization" in e for e in monitor["spec"]["endpoints"])
    assert not [d for d in render(helm) if d["kind"] in ("ServiceMonitor",)]
    moved = run([helm, "template", "t", str(CHART), "--set", "serviceMonitor.enabled=true"])
    assert moved.returncode != 0 and "metrics.serviceMonitor" in moved.stderr


def test_helm_renders_the_dashboard_for_the_grafana_sidecar(helm: str) -> None:
    docs = render(helm, *BOTH)
    [configmap] = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["labels"].get("grafana_dashboard") == "1"
    ]
    [(name, text)] = configmap["data"].items()
    assert name.endswith(".json")
    assert json.loads(text) == load_dashboard()
    assert text.strip() == DASHBOARD.read_text().strip()
    defaults = render(helm)
    assert not [d for d in defaults if d["metadata"]["name"] == configmap["metadata"]["name"]]


def test_monitoring_manifests_pass_kubernetes_validate(helm: str, tmp_path: Path) -> None:
    done = run([helm, "template", "t", str(CHART), *BOTH])
    assert done.returncode == 0, done.stderr
    path = tmp_path / "monitoring.yaml"
    path.write_text(done.stdout)
    validate = Path(helm).parent / "kubernetes-validate"
    checked = run([str(validate), "-k", "1.30.0", "--strict", str(path)])
    output = checked.stdout + checked.stderr
    assert checked.returncode == 0 and "ERROR" not in output, output
    # the ServiceMonitor is a CRD: its schema is not bundled, which is the only warning
    warnings = [line for line in output.splitlines() if line.startswith("WARN")]
    assert len(warnings) == 1 and "ServiceMonitor" in warnings[0], output
