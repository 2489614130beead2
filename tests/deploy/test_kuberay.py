"""KubeRay manifests: render, validate against the v1.7.0 CRDs, scan, and check the contract.

checkov ignores the RayService CRD (0 resources, exit 0 even with ``privileged: true``), so the
head and worker pod templates are also scanned as plain Pods, together with the rendered
NetworkPolicies (CKV2_K8S_6 pairs pods with policies).
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml

from deployments.ops import kuberay
from deployments.ray_env import system_env
from tests.deploy.conftest import (
    KUSTOMIZATIONS,
    OVERLAYS,
    ROOT,
    assert_checkov_clean,
    run_checkov,
)
from twin.settings import TwinSettings

CRD_DIR = ROOT.parent / "shared" / "schemas" / "kuberay"
CRD_FILES = {
    "RayService": "ray.io_rayservices.yaml",
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
}
#: security-reliability.md §3 (Kubernetes), plus host namespaces, added capabilities and
#: secrets-as-files. Gated by ID because offline checkov reports no severities.
K8S_CHECKS = (
    "CKV_K8S_8", "CKV_K8S_9", "CKV_K8S_10", "CKV_K8S_11", "CKV_K8S_12", "CKV_K8S_13",
    "CKV_K8S_14", "CKV_K8S_16", "CKV_K8S_17", "CKV_K8S_18", "CKV_K8S_19", "CKV_K8S_20",
    "CKV_K8S_21", "CKV_K8S_22", "CKV_K8S_23", "CKV_K8S_25", "CKV_K8S_28", "CKV_K8S_29",
    "CKV_K8S_30", "CKV_K8S_31", "CKV_K8S_35", "CKV_K8S_37", "CKV_K8S_38", "CKV_K8S_40",
    "CKV_K8S_43", "CKV2_K8S_1", "CKV2_K8S_2", "CKV2_K8S_3", "CKV2_K8S_4", "CKV2_K8S_5",
    "CKV2_K8S_6",
)  # fmt: skip
RAY_KINDS = ("RayService", "RayCluster", "RayJob")


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with unknown fields refused (the API server would silently prune them).

    A typo such as ``enableInTreeAutoscalling`` must fail here, not vanish at apply time.
    """
    out = copy.deepcopy(schema)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(out)
    return out


def _crd_schema(kind: str, version: str) -> dict[str, Any]:
    path = CRD_DIR / CRD_FILES[kind]
    assert path.is_file(), f"{path} missing (shared/schemas/kuberay)"
    crd = yaml.safe_load(path.read_text())
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return _strict(entry["schema"]["openAPIV3Schema"])
    raise AssertionError(f"{kind} has no version {version}")


def _ray_documents(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] in RAY_KINDS]


def _rayservice(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (service,) = [doc for doc in docs if doc["kind"] == "RayService"]
    return service


def _pod_templates(service: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    cluster = service["spec"]["rayClusterConfig"]
    templates = [("head", cluster["headGroupSpec"]["template"])]
    templates += [(g["groupName"], g["template"]) for g in cluster["workerGroupSpecs"]]
    return templates


def _containers(service: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found = [
        (f"{group}/{c['name']}", c)
        for group, template in _pod_templates(service)
        for c in template["spec"]["containers"]
    ]
    autoscaler = service["spec"]["rayClusterConfig"]["autoscalerOptions"]
    return [*found, ("autoscaler", autoscaler)]


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_kustomization_renders_a_rayservice(rendered, name):
    docs = rendered[name]
    kinds = sorted({doc["kind"] for doc in docs})
    for kind in (
        "RayService", "NetworkPolicy", "PodDisruptionBudget", "PodMonitor", "TargetGroupBinding",
        "CronJob",
    ):  # fmt: skip
        assert kind in kinds, (name, kinds)
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "novamind", (doc["kind"], doc["metadata"])


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_ray_resources_validate_against_the_kuberay_crds(rendered, name):
    documents = _ray_documents(rendered[name])
    assert documents
    for doc in documents:
        group, version = doc["apiVersion"].split("/")
        assert group == "ray.io"
        jsonschema.validate(doc, _crd_schema(doc["kind"], version))


def test_the_strict_schema_catches_a_misspelt_field(rendered):
    doc = copy.deepcopy(_rayservice(rendered["overlays/prod"]))
    doc["spec"]["rayClusterConfig"]["enableInTreeAutoscalling"] = True
    with pytest.raises(jsonschema.ValidationError, match="enableInTreeAutoscalling"):
        jsonschema.validate(doc, _crd_schema("RayService", "v1"))


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_serve_config_files_are_generated_from_the_serve_settings(name):
    directory = ROOT / "kuberay" / name
    assert kuberay.write_or_check(directory, check=True), (
        f"{directory / kuberay.CONFIG_FILE} is stale: run "
        f"`novamind kuberay serve-config kuberay/{name}`"
    )


def test_drift_between_settings_and_config_is_detected(tmp_path):
    directory = tmp_path / "overlay"
    shutil.copytree(ROOT / "kuberay" / "overlays" / "prod", directory)
    settings = directory / kuberay.SETTINGS_FILE
    settings.write_text(settings.read_text().replace("hosts = 8", "hosts = 9"))
    assert not kuberay.write_or_check(directory, check=True)
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "novamind"), "kuberay", "serve-config", str(directory),
         "--check"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert kuberay.write_or_check(directory, check=False)
    assert kuberay.write_or_check(directory, check=True)


@pytest.mark.parametrize(
    "args",
    [{"database_url": "postgresql://x"}, {"research_key": "k"}, {"no_such_setting": 1}],
)
def test_serve_args_refuse_credentials_and_unknown_fields(args):
    with pytest.raises(kuberay.errors.ConfigurationError):
        kuberay.serve_config({"environment": "prod", **args})


def test_serve_args_the_application_refuses_are_refused():
    with pytest.raises(kuberay.errors.ConfigurationError, match="api_min_replicas"):
        kuberay.serve_config({"environment": "prod", "api_min_replicas": 5, "api_max_replicas": 2})


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_serve_config_is_what_serve_and_the_app_accept(rendered, overlay):
    from ray.serve.schema import ServeDeploySchema

    service = _rayservice(rendered[f"overlays/{overlay}"])
    config = yaml.safe_load(service["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "deployments.serve_app:app_builder"
    assert app.args["environment"] == overlay
    # The ConfigMap names the same environment (for `novamind backup` run in a pod).
    (settings_map,) = [
        d for d in rendered[f"overlays/{overlay}"]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "novamind-settings"
    ]  # fmt: skip
    assert settings_map["data"]["NOVAMIND_ENVIRONMENT"] == overlay
    # The application builds with these args once the pod environment supplies the rest.
    settings = TwinSettings.model_validate(
        {
            **app.args,
            "public_base_url": settings_map["data"]["NOVAMIND_PUBLIC_BASE_URL"],
            "audit_anchors": settings_map["data"]["NOVAMIND_AUDIT_ANCHORS"],
            "database_url": "postgresql://db/novamind",
            "s3_bucket": "b",
            "kms_key_id": "k",
            "jwks_url": "https://idp/jwks.json",
            "research_key": "r",
        }
    )
    (deployment,) = app.deployments
    assert deployment.autoscaling_config["max_replicas"] == settings.api_max_replicas
    assert deployment.max_queued_requests == settings.api_max_queued_requests


def test_ray_version_matches_the_package_and_the_image(rendered):
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in KUSTOMIZATIONS:
        cluster = _rayservice(rendered[name])["spec"]["rayClusterConfig"]
        assert cluster["rayVersion"] == ray.__version__
    assert f"FROM rayproject/ray:{ray.__version__}-py311\n" in dockerfile


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_ray_cluster_is_hardened_and_highly_available(rendered, name):
    service = _rayservice(rendered[name])
    cluster = service["spec"]["rayClusterConfig"]
    assert cluster["authOptions"]["mode"] == "token"
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["gcsFaultToleranceOptions"]["redisAddress"]
    assert "valueFrom" in cluster["gcsFaultToleranceOptions"]["redisPassword"]
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for where, container in _containers(service):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
        resources = container["resources"]
        assert resources["requests"] == resources["limits"], where
    for group, template in _pod_templates(service):
        spec = template["spec"]
        assert spec["serviceAccountName"] == "novamind"
        mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert {"/tmp", "/dev/shm"} <= mounts, group
        assert not any("secretRef" in e for e in spec["containers"][0].get("envFrom", []))
        assert all("value" in e for e in spec["containers"][0].get("env", [])), group
        # Ray's settings as the platform runs it; a container's own env, which KubeRay leaves
        # as it is (it would set a RayService's death-info wait to 0 otherwise).
        env = {e["name"]: e["value"] for e in spec["containers"][0].get("env", [])}
        assert {k: env.get(k) for k in system_env()} == system_env(), group
        if group != "head":
            probes = spec["containers"][0]
            assert probes["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
            assert probes["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
            assert spec["automountServiceAccountToken"] is False


def test_upgrade_strategy_is_blue_green_in_prod_and_in_place_in_dev(rendered):
    assert _rayservice(rendered["overlays/prod"])["spec"]["upgradeStrategy"]["type"] == (
        "NewCluster"
    )
    assert _rayservice(rendered["overlays/staging"])["spec"]["upgradeStrategy"]["type"] == (
        "NewCluster"
    )
    assert _rayservice(rendered["overlays/dev"])["spec"]["upgradeStrategy"]["type"] == "None"
    sizes = {
        overlay: _rayservice(rendered[f"overlays/{overlay}"])["spec"]["rayClusterConfig"][
            "workerGroupSpecs"
        ][0]["maxReplicas"]
        for overlay in OVERLAYS
    }
    assert sizes["dev"] < sizes["staging"] < sizes["prod"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_by_digest(rendered, overlay):
    for _, container in _containers(_rayservice(rendered[f"overlays/{overlay}"]))[:-1]:
        assert "@sha256:" in container["image"], container["image"]


def test_only_the_serve_and_metrics_ports_are_open_from_outside(rendered):
    policies = [d for d in rendered["overlays/prod"] if d["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["metadata"]["name"] == "default-deny-all"]
    assert deny and deny[0]["spec"]["podSelector"] == {}
    assert sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    opened: dict[str, set[int]] = {"addresses": set(), "namespaces": set(), "operator": set()}
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            sources = rule.get("from", [])
            if sources and all(set(s) == {"podSelector"} for s in sources):
                continue  # the cluster's own pods (same namespace, novamind label)
            assert rule.get("ports"), policy["metadata"]["name"]  # never all ports
            ports = {p["port"] for p in rule["ports"]}
            for source in sources:
                if "ipBlock" in source:
                    opened["addresses"] |= ports
                elif "podSelector" in source:  # a named pod in a named namespace
                    assert source["podSelector"]["matchLabels"] == {
                        "app.kubernetes.io/name": "kuberay-operator"
                    }
                    opened["operator"] |= ports
                else:
                    opened["namespaces"] |= ports
    assert opened == {"addresses": {8000}, "namespaces": {8080}, "operator": {8265}}
    # GCS, client and dashboard-agent ports are never open beyond the cluster's own pods.
    assert not set().union(*opened.values()) & {6379, 10001, 52365}


def test_grafana_dashboard_charts_the_twin_metrics(rendered):
    (dashboard,) = [
        d for d in rendered["base"]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "novamind-grafana-dashboard"
    ]  # fmt: skip
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = dashboard["data"]["novamind-twins.json"]
    for metric in (
        "ray_novamind_http_requests_total",
        "ray_novamind_http_request_latency_ms_bucket",
        "ray_novamind_events_ingested_total",
        "ray_novamind_alerts_raised_total",
        "ray_novamind_twins_active",
        "ray_novamind_ingest_ack_latency_ms_bucket",
        "ray_novamind_twin_activations_total",
    ):
        assert metric in text, metric


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_traces_go_to_the_collector_that_an_egress_policy_lets_through(rendered, overlay):
    from urllib.parse import urlsplit

    from twin.settings import TelemetrySettings

    docs = rendered[f"overlays/{overlay}"]
    (settings_map,) = [
        d for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "novamind-settings"
    ]  # fmt: skip
    traces = {
        name.removeprefix("NOVAMIND_").lower(): value
        for name, value in settings_map["data"].items()
        if name.startswith("NOVAMIND_OTEL_")
    }
    settings = TelemetrySettings.model_validate(traces)  # the names and bounds the app reads
    assert settings.otel_exporter_otlp_endpoint is not None
    endpoint = urlsplit(settings.otel_exporter_otlp_endpoint)
    namespace = (endpoint.hostname or "").split(".")[1]
    opened = {
        port["port"]
        for policy in docs
        if policy["kind"] == "NetworkPolicy"
        for rule in policy["spec"].get("egress", [])
        for target in rule.get("to", [])
        if target.get("namespaceSelector", {}).get("matchLabels")
        == {"kubernetes.io/metadata.name": namespace}
        for port in rule.get("ports", [])
    }
    assert endpoint.port in opened, (namespace, opened)


def _pods_and_policies(
    docs: list[dict[str, Any]], out: Path, kinds: tuple[str, ...] = ("RayService",)
) -> Path:
    """Pod templates of ``kinds`` as plain Pods, with the policies they are matched against."""
    manifests: list[dict[str, Any]] = []
    for doc in docs:
        if doc["kind"] == "RayService" and doc["kind"] in kinds:
            for group, template in _pod_templates(doc):
                metadata = dict(template.get("metadata", {}))
                metadata.update(name=f"novamind-{group}", namespace=doc["metadata"]["namespace"])
                manifests.append(
                    {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                     "spec": template["spec"]}
                )  # fmt: skip
        elif doc["kind"] == "CronJob" and doc["kind"] in kinds:
            template = doc["spec"]["jobTemplate"]["spec"]["template"]
            metadata = dict(template.get("metadata", {}))
            metadata.update(name=doc["metadata"]["name"], namespace=doc["metadata"]["namespace"])
            manifests.append(
                {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}
            )
        elif doc["kind"] == "NetworkPolicy":
            manifests.append(doc)
    path = out / "ray-pods.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    return path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_on_the_rendered_manifests(rendered, overlay, tmp_path):
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(rendered[f"overlays/{overlay}"]))
    assert_checkov_clean(run_checkov(path, "kubernetes", K8S_CHECKS))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_on_the_ray_pod_templates_as_pods(rendered, overlay, tmp_path):
    report = run_checkov(
        _pods_and_policies(rendered[f"overlays/{overlay}"], tmp_path), "kubernetes", K8S_CHECKS
    )
    assert_checkov_clean(report)
    pods = {c["resource"] for c in report["results"]["passed_checks"] if "Pod." in c["resource"]}
    assert pods == {"Pod.novamind.novamind-head", "Pod.novamind.novamind-twins"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_passes_on_the_scheduled_jobs_pod_templates_as_pods(rendered, overlay, tmp_path):
    # As Pods, so that CKV2_K8S_6 pairs them with their NetworkPolicy (checkov does not for a
    # CronJob). Probes are left out: a job runs to completion and serves nothing to probe
    # (checkov's own CronJob scan exempts jobs from them too).
    checks = tuple(c for c in K8S_CHECKS if c not in ("CKV_K8S_8", "CKV_K8S_9"))
    path = _pods_and_policies(rendered[f"overlays/{overlay}"], tmp_path, ("CronJob",))
    report = run_checkov(path, "kubernetes", checks)
    assert_checkov_clean(report)
    pods = {c["resource"] for c in report["results"]["passed_checks"] if "Pod." in c["resource"]}
    assert pods == {"Pod.novamind.novamind-audit-anchor", "Pod.novamind.novamind-backup"}
    paired = {
        c["resource"] for c in report["results"]["passed_checks"] if c["check_id"] == "CKV2_K8S_6"
    }
    assert {"Pod.novamind.novamind-audit-anchor", "Pod.novamind.novamind-backup"} <= paired


def test_checkov_scan_of_pods_does_fail_on_a_privileged_template(rendered, tmp_path):
    docs = copy.deepcopy(rendered["overlays/prod"])
    service = _rayservice(docs)
    worker = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
    worker["containers"][0]["securityContext"]["privileged"] = True
    report = run_checkov(_pods_and_policies(docs, tmp_path), "kubernetes", K8S_CHECKS)
    assert {c["check_id"] for c in report["results"]["failed_checks"]} == {"CKV_K8S_16"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_carry_their_environments_aws_identifiers(rendered, overlay):
    docs = rendered[f"overlays/{overlay}"]
    (binding,) = [d for d in docs if d["kind"] == "TargetGroupBinding"]
    assert f"targetgroup/novamind-{overlay}-serve/" in binding["spec"]["targetGroupARN"]
    (account,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.endswith(f":role/novamind-{overlay}-app")
    (redis,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "gcs-redis"]
    assert f"novamind-{overlay}-gcs" in redis["spec"]["externalName"]


#: The scheduled jobs: name -> the command they run.
CRONJOBS = {
    "novamind-audit-anchor": ["novamind", "audit", "anchor"],
    "novamind-backup": ["novamind", "backup", "--scheduled"],
}
#: The files of novamind-secrets each job mounts (the research key: the settings require it).
JOB_SECRETS = {
    "novamind-audit-anchor": {"NOVAMIND_DATABASE_URL", "NOVAMIND_RESEARCH_KEY"},
    "novamind-backup": {"NOVAMIND_DATABASE_URL", "NOVAMIND_MONGO_URL", "NOVAMIND_RESEARCH_KEY"},
}
#: The store ports each job may reach beyond DNS and HTTPS.
JOB_STORE_PORTS = {"novamind-audit-anchor": {5432}, "novamind-backup": {5432, 27017}}
_CRON_FIELDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 6))


def _cron_ok(schedule: str) -> bool:
    """Whether ``schedule`` is a standard five-field cron expression within each field's range."""
    fields = schedule.split()
    if len(fields) != 5:
        return False
    for field, (low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for part in field.split(","):
            match = re.fullmatch(r"(\*|(\d+)(?:-(\d+))?)(?:/(\d+))?", part)
            if match is None:
                return False
            bounds = [int(v) for v in match.group(2, 3) if v is not None]
            step = match.group(4)
            if any(not low <= v <= high for v in bounds) or (step is not None and int(step) < 1):
                return False
            if len(bounds) == 2 and bounds[0] > bounds[1]:
                return False
    return True


def test_the_cron_syntax_check_refuses_what_kubernetes_would():
    assert all(_cron_ok(s) for s in ("*/15 * * * *", "7 * * * *", "0 3 1-15/2 * 0,6"))
    assert not any(_cron_ok(s) for s in ("*/15 * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *"))


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_the_scheduled_jobs_run_hardened_with_the_services_identity(rendered, name):
    docs = rendered[name]
    jobs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "CronJob"}
    assert set(jobs) == set(CRONJOBS)
    (service,) = [d for d in docs if d["kind"] == "RayService"]
    head = service["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    ray_image = head["containers"][0]["image"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for job_name, job in jobs.items():
        spec = job["spec"]
        assert job["apiVersion"] == "batch/v1"
        assert _cron_ok(spec["schedule"]), spec["schedule"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert 0 < spec["startingDeadlineSeconds"] <= 900
        assert 1 <= spec["successfulJobsHistoryLimit"] <= 5
        assert 1 <= spec["failedJobsHistoryLimit"] <= 5
        run = spec["jobTemplate"]["spec"]
        assert 0 <= run["backoffLimit"] <= 3 and 0 < run["activeDeadlineSeconds"] <= 3600
        pod = run["template"]["spec"]
        assert pod["restartPolicy"] == "Never"
        assert pod["serviceAccountName"] == "novamind"
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["command"] == CRONJOBS[job_name]
        assert container["image"] == ray_image  # the application's image, as the RayService
        # The same settings as the Ray pods: the ConfigMap, and the Secret as files.
        assert container["envFrom"] == head["containers"][0]["envFrom"]
        assert {"name": "NOVAMIND_SECRETS_DIR", "value": "/var/run/secrets/novamind"} in (
            container["env"]
        )
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] >= 10000
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert container["resources"]["requests"] == container["resources"]["limits"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        secret = volumes[mounts["/var/run/secrets/novamind"]]["secret"]
        assert secret["secretName"] == "novamind-secrets"
        # Only the files the job needs, each under its own name.
        assert {i["key"] for i in secret["items"]} == JOB_SECRETS[job_name]
        assert all(i["key"] == i["path"] for i in secret["items"])
        # Egress to the AWS APIs (S3, KMS, STS) is let through for the pods' labels, and no
        # policy opens any ingress to them.
        labels = run["template"]["metadata"]["labels"]
        selecting = [
            p for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
        ]  # fmt: skip
        egress_ports = {
            port["port"] for p in selecting for rule in p["spec"].get("egress", [])
            for port in rule.get("ports", [])
        }  # fmt: skip
        assert 443 in egress_ports and 53 in egress_ports, job_name
        assert egress_ports - {443, 53} == JOB_STORE_PORTS[job_name], job_name
        assert not any(p["spec"].get("ingress") for p in selecting), job_name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays_name_the_anchor_bucket_and_the_backup_root(rendered, overlay):
    (settings_map,) = [
        d for d in rendered[f"overlays/{overlay}"]
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "novamind-settings"
    ]  # fmt: skip
    data = settings_map["data"]
    account = data["NOVAMIND_S3_BUCKET"].rsplit("-", 1)[1]
    # terraform/modules/storage names the Object-Lock bucket <name>-audit-anchors-<account>.
    assert data["NOVAMIND_AUDIT_ANCHORS"] == (
        f"s3://novamind-{overlay}-audit-anchors-{account}/{overlay}"
    )
    assert data["NOVAMIND_BACKUP_ROOT"] == f"s3://{data['NOVAMIND_S3_BUCKET']}/backups/{overlay}"
