"""deploy/kubernetes: every manifest valid against the Kubernetes API schemas (offline, kubernetes-validate),
and agreeing with the image (Dockerfile), the service's routes, settings and gunicorn configuration."""
from __future__ import annotations

import ast
import copy
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from flask import Flask

from service import api, settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "kubernetes"
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
GUNICORN_CONF = ast.parse((ROOT / "service" / "gunicorn.conf.py").read_text(encoding="utf-8"))
K8S_VERSIONS = ("1.30.0", "1.37.0")  # the oldest release the manifests are meant for, the newest bundled
APPLIED_ALONE = {"models-pvc.yaml", "model-loader.yaml"}  # not in kustomization.yaml (see models-pvc.yaml)
MANIFESTS = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
MIB = 1 << 20
# models/default when it is absent (it is trained, not committed): two 8,631 x 100 float32 .npy files
DEFAULT_MODEL_BYTES = 2 * 3_452_528


def _docs(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text(encoding="utf-8")) if doc]


def _one(kind: str) -> dict:
    found = [doc for name in MANIFESTS for doc in _docs(name) if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


DEPLOYMENT, SERVICE = _one("Deployment"), _one("Service")
HPA, PDB, PVC, LOADER = (_one(kind) for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget",
                                                  "PersistentVolumeClaim", "Pod"))
POD = DEPLOYMENT["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]
ENV = {var["name"]: var["value"] for var in CONTAINER["env"]}
MOUNTS = {mount["mountPath"]: mount for mount in CONTAINER["volumeMounts"]}
VOLUMES = {volume["name"]: volume for volume in POD["volumes"]}


def _quantity(text: str) -> float:
    """A Kubernetes quantity ("512Mi", "2", "500m", "1G") as a number (bytes or cores)."""
    match = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", str(text))
    assert match, f"not a quantity: {text!r}"
    scale = {None: 1, "m": 1e-3, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[match[2]]
    return float(match[1]) * scale


def _conf(name: str):
    """A literal setting of service/gunicorn.conf.py (the value of `x if test else y` is x)."""
    for node in GUNICORN_CONF.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            value = node.value.body if isinstance(node.value, ast.IfExp) else node.value
            return ast.literal_eval(value)
    raise AssertionError(f"{name} is not set in service/gunicorn.conf.py")


def _gunicorn_env_reads() -> set[str]:
    """The variables gunicorn.conf.py reads: os.environ.get("NAME", ...)."""
    return {node.args[0].value for node in ast.walk(GUNICORN_CONF)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
            and ast.unparse(node.func.value) == "os.environ" and isinstance(node.args[0], ast.Constant)}


def _container_port(port) -> int:
    by_name = {p["name"]: p["containerPort"] for p in CONTAINER["ports"]}
    return by_name[port] if isinstance(port, str) else port


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def _routes() -> set[str]:
    """GET routes of the service's blueprint, as Flask registers them, that the OpenAPI contract lists too."""
    app = Flask(__name__)
    app.register_blueprint(api.bp)
    return {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods} & _contract_paths()


def _contract_paths() -> set[str]:
    contract = yaml.safe_load((ROOT / "service" / "openapi.yaml").read_text(encoding="utf-8"))
    return {path for path, ops in contract["paths"].items() if "get" in ops}


def _image_user() -> tuple[str, int]:
    """The user the Dockerfile creates (useradd ... --uid N ... NAME), its continuation lines joined."""
    command = re.search(r"useradd (?:[^\n]*\\\n)*[^\n]*", DOCKERFILE)[0].replace("\\\n", " ").split()
    return command[-1], int(command[command.index("--uid") + 1])


# ------------------------------------------------------------------------------------- the schemas

@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_against_the_api_schemas(name, version):
    docs = _docs(name)
    assert docs
    for doc in docs:  # strict: a field the API does not know (a typo) is an error
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("breakage", ["misspelt field", "wrong type", "missing field"])
def test_the_validator_rejects_a_broken_deployment(breakage):
    broken = copy.deepcopy(DEPLOYMENT)
    container = broken["spec"]["template"]["spec"]["containers"][0]
    if breakage == "misspelt field":
        container["securityContext"]["readOnlyRootFileSystem"] = True
    elif breakage == "wrong type":
        broken["spec"]["replicas"] = "two"
    else:
        del container["name"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)


def test_kustomization_lists_the_service_manifests():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    assert listed | APPLIED_ALONE == set(MANIFESTS) and not listed & APPLIED_ALONE
    kinds = {doc["kind"] for name in listed for doc in _docs(name)}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    image_names = {image["name"] for image in kustomization.get("images", [])}
    assert CONTAINER["image"].split(":")[0] in image_names | {CONTAINER["image"]}


# ------------------------------------------------------------------------ agreeing with the service

def test_probes_ask_routes_the_service_defines():
    routes = _routes()
    assert {"/healthz", "/readyz"} <= routes
    assert CONTAINER["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert CONTAINER["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = CONTAINER[probe]["httpGet"]
        assert get["path"] in routes, probe
        assert _container_port(get["port"]) == int(ENV["PORT"]), probe


def test_metrics_annotations_name_the_metrics_route_and_port():
    annotations = DEPLOYMENT["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in _contract_paths()
    assert int(annotations["prometheus.io/port"]) == int(ENV["PORT"])


def test_startup_probe_allows_a_first_start():
    probe = CONTAINER["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 180  # derived data: up to ~90 s, x2


def test_ports_agree_between_image_deployment_and_service():
    image_port = re.search(r"^\s*PORT=(\d+)", DOCKERFILE, re.M)[1]
    exposed = re.search(r"^EXPOSE (\d+)", DOCKERFILE, re.M)[1]
    assert ENV["PORT"] == image_port == exposed
    (http,) = CONTAINER["ports"]
    assert http["containerPort"] == int(ENV["PORT"])
    (port,) = SERVICE["spec"]["ports"]
    assert SERVICE["spec"]["type"] == "ClusterIP" and port["port"] == 80
    assert _container_port(port["targetPort"]) == int(ENV["PORT"])


def test_environment_names_are_read_by_the_service():
    known = ({f"{settings.PREFIX}_{name}" for name in settings.DEFAULTS} | set(settings.PLAIN_ENV)
             | _gunicorn_env_reads())
    assert {"PORT", "WEB_CONCURRENCY"} <= _gunicorn_env_reads()
    assert set(ENV) <= known, set(ENV) - known


def test_no_service_links_that_the_settings_would_read():
    """Kubernetes gives each pod NAME_SERVICE_HOST, NAME_PORT=tcp://... for every Service NAME; for a
    Service named like the settings' prefix those would be read as SKIPGRAM_ settings."""
    if SERVICE["metadata"]["name"].upper().replace("-", "_") == settings.PREFIX:
        assert POD["enableServiceLinks"] is False


def test_every_written_path_is_a_writable_emptydir():
    def emptydir_at(path: str) -> dict:
        mount = MOUNTS[path]
        assert not mount.get("readOnly", False), path
        return VOLUMES[mount["name"]]["emptyDir"]

    cache = ENV[f"{settings.PREFIX}_CACHE_DIR"]
    # under its mount, not the mount itself: the service creates the folder private to its user
    (mount,) = [path for path in MOUNTS if _under(cache, path)]
    assert emptydir_at(mount).get("medium") != "Memory"  # mapped files must stay reclaimable page cache
    emptydir_at("/tmp")  # tempfile.gettempdir(), which settings.default_cache_dir() asks for
    emptydir_at(_conf("worker_tmp_dir"))  # gunicorn's heartbeat files and the metrics folder


def test_the_model_comes_from_a_read_only_volume():
    (mount,) = [path for path in MOUNTS if _under(ENV["MODEL_DIR"], path)]
    assert MOUNTS[mount]["readOnly"] is True
    claim = VOLUMES[MOUNTS[mount]["name"]]["persistentVolumeClaim"]
    assert claim["readOnly"] is True and claim["claimName"] == PVC["metadata"]["name"]
    (loader_volume,) = LOADER["spec"]["volumes"]
    assert loader_volume["persistentVolumeClaim"]["claimName"] == PVC["metadata"]["name"]
    assert not LOADER["spec"]["containers"][0]["volumeMounts"][0].get("readOnly", False)


@pytest.mark.parametrize("pod", [POD, LOADER["spec"]], ids=["service", "model-loader"])
def test_runs_as_the_images_non_root_user(pod):
    user, uid = _image_user()
    assert re.findall(r"^USER (\S+)", DOCKERFILE, re.M)[-1] == user
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context.get("runAsUser", pod["securityContext"]["runAsUser"]) != 0


# ---------------------------------------------------------------------- replicas, sizing, shutdown

def test_selectors_match_the_pods():
    labels = DEPLOYMENT["spec"]["template"]["metadata"]["labels"]
    selector = DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert SERVICE["spec"]["selector"].items() <= labels.items()
    assert PDB["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for spread in POD["topologySpreadConstraints"]:
        assert spread["labelSelector"]["matchLabels"].items() <= labels.items()
    target = HPA["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        DEPLOYMENT["apiVersion"], "Deployment", DEPLOYMENT["metadata"]["name"])


def test_replicas_autoscaling_and_disruption_budget():
    replicas = DEPLOYMENT["spec"]["replicas"]
    assert replicas == HPA["spec"]["minReplicas"] == 2 < HPA["spec"]["maxReplicas"]
    (metric,) = HPA["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert PDB["apiVersion"] == "policy/v1" and 1 <= PDB["spec"]["minAvailable"] < replicas  # drains proceed
    assert DEPLOYMENT["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_workers_match_the_cpu_request():
    cores = _quantity(CONTAINER["resources"]["requests"]["cpu"])  # the HPA's utilisation needs it too
    assert int(ENV["WEB_CONCURRENCY"]) == cores >= 1


def test_memory_is_sized_from_the_model():
    """README: PSS 1.10-1.28x the vectors + ~114 MiB (2 workers); the limit adds the page cache's room."""
    files = list((ROOT / "models" / "default").glob("*.npy"))
    size = sum(f.stat().st_size for f in files) if files else DEFAULT_MODEL_BYTES
    workers = int(ENV["WEB_CONCURRENCY"])
    request = _quantity(CONTAINER["resources"]["requests"]["memory"])
    limit = _quantity(CONTAINER["resources"]["limits"]["memory"])
    assert request >= 1.25 * size + 128 * MIB + 16 * MIB * max(0, workers - 2)
    assert limit >= 1.5 * size + 256 * MIB + 16 * MIB * max(0, workers - 2)
    assert limit > request
    shm = VOLUMES[MOUNTS[_conf("worker_tmp_dir")]["name"]]["emptyDir"]
    assert shm["medium"] == "Memory" and _quantity(shm["sizeLimit"]) <= limit - request


def test_shutdown_drains_before_gunicorn_stops():
    command = CONTAINER["lifecycle"]["preStop"]["exec"]["command"]
    assert Path(command[0]).name == "sleep"
    assert POD["terminationGracePeriodSeconds"] > int(command[1]) + _conf("graceful_timeout")
