"""cluster/rayjob.yaml against the RayJob schema of KubeRay's own CRD (tests/cluster/data/).

A structural OpenAPI v3 schema, as Kubernetes' CRDs carry, leaves `additionalProperties` unset:
JSON-schema validation alone accepts any field it does not know. The API server does not: it
prunes unknown fields, and `kubectl apply` (field validation Strict by default since Kubernetes
1.27) refuses them. So the schema is made strict before jsonschema checks the manifest: every
object schema that lists its `properties` allows those only, except where the CRD sets
`x-kubernetes-preserve-unknown-fields`. No Kubernetes is needed; none runs here.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "cluster" / "rayjob.yaml"
SCHEMA = Path(__file__).parent / "data" / "ray.io_rayjobs.v1.schema.yaml"
COMBINATORS = ("allOf", "anyOf", "oneOf", "not")


def strict(schema: dict) -> dict:
    """A copy of a structural schema in which an object allows only the fields it lists."""
    schema = copy.deepcopy(schema)

    def walk(node: object, in_combinator: bool = False) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item, in_combinator)
            return
        if not isinstance(node, dict):
            return
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            # Inside anyOf & co. a closed branch would refuse its siblings' fields; structural
            # schemas keep fields out of them, and this says so if one ever does not.
            assert not in_combinator, "fields listed inside a combinator: not structural"
            node.setdefault("additionalProperties", False)
        for key, value in node.items():
            if key == "properties":
                for field in value.values():
                    walk(field, in_combinator)
            elif key != "enum" and key != "default" and key != "example":
                walk(value, in_combinator or key in COMBINATORS)

    walk(schema)
    return schema


def problems(manifest: dict, schema: dict) -> list[str]:
    """Where the manifest breaks the schema: 'path: message', one per error."""
    validator = jsonschema.Draft7Validator(strict(schema))
    return sorted(f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                  for e in validator.iter_errors(manifest))


@pytest.fixture(scope="module")
def schema() -> dict:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)     # 600 kB: the C parser if any
    return yaml.load(SCHEMA.read_text(), Loader=loader)


def test_schema_copy_names_its_source():
    header = SCHEMA.read_text()[:1000]
    for needed in ("https://github.com/ray-project/kuberay",
                   "ray-operator/config/crd/bases/ray.io_rayjobs.yaml", "tag:        v1.7.0"):
        assert needed in header


def test_rayjob_manifest_matches_kuberays_schema(schema):
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayJob"
    assert problems(manifest, schema) == []


def test_rayjob_cluster_requires_a_token_and_keeps_the_dashboard_on_loopback():
    """What the manifest's security comment promises, read from the manifest itself: KubeRay's
    token authentication (it generates the Secret and sets RAY_AUTH_MODE=token in every Ray
    container) and the dashboard bound to the head pod's loopback, with no port of its own."""
    cluster = yaml.safe_load(MANIFEST.read_text())["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    ports = [p for c in head["template"]["spec"]["containers"] for p in c.get("ports", [])]
    assert 8265 not in {p["containerPort"] for p in ports}, ports
    env = [e for g in [head, *cluster["workerGroupSpecs"]]
           for c in g["template"]["spec"]["containers"] for e in c.get("env", [])]
    # a container's own env must not turn off what authOptions turned on
    assert all(e.get("value") == "token" for e in env if e["name"] == "RAY_AUTH_MODE"), env


# Each planted in the file's text as a hand would: a misspelled or unknown field at each level
# (the RayJob, its cluster, a worker group, the pod template's PodSpec and container), or a
# value of the wrong type.
PLANTS = {
    "entrypoint misspelled": ("  entrypoint: >-", "  entrypont: >-", "spec: Additional"),
    "shutdownAfterJobFinishes misspelled": ("shutdownAfterJobFinishes: true",
                                            "shutdownAfterJobFinish: true", "spec: Additional"),
    "cluster field misspelled": ("    rayVersion:", "    rayVerison:",
                                 "spec.rayClusterSpec: Additional"),
    "worker group field misspelled": ("        minReplicas: 0", "        minReplica: 0",
                                      "spec.rayClusterSpec.workerGroupSpecs.0: Additional"),
    "pod spec field misspelled": ("            tolerations:", "            toleration:",
                                  "spec.rayClusterSpec.workerGroupSpecs.0.template.spec: "
                                  "Additional"),
    "container field misspelled": ("              volumeMounts:", "              volumeMount:",
                                   "spec.rayClusterSpec.headGroupSpec.template.spec.containers.0:"
                                   " Additional"),
    "rayStartParams value not a string": ('num-cpus: "0"', "num-cpus: 0",
                                          "spec.rayClusterSpec.headGroupSpec.rayStartParams."
                                          "num-cpus: 0 is not of type 'string'"),
    "authOptions mode unknown": ("mode: token", "mode: tokens",
                                 "spec.rayClusterSpec.authOptions.mode: 'tokens' is not one of"),
}


@pytest.mark.parametrize("plant", sorted(PLANTS))
def test_a_field_kuberay_does_not_know_fails(schema, plant):
    old, new, said = PLANTS[plant]
    text = MANIFEST.read_text()
    assert text.count(old) == 1, old                   # the plant lands where it says
    found = problems(yaml.safe_load(text.replace(old, new)), schema)
    # What it says is about the plant (a misspelled required field is also missing, say).
    assert found and any(f.startswith(said) for f in found), found


def test_strict_keeps_preserve_unknown_fields_open_and_maps_as_they_are():
    schema = {"type": "object", "properties": {
        "known": {"type": "string"},
        "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                 "properties": {"a": {"type": "integer"}}},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {"type": "object"}}}
    assert problems({"known": "x", "open": {"a": 1, "anything": [1]}, "labels": {"k": "v"},
                     "free": {"whatever": 1}}, schema) == []
    assert problems({"knwon": "x"}, schema) == [
        "<root>: Additional properties are not allowed ('knwon' was unexpected)"]
    assert problems({"open": {"a": "1"}}, schema) == ["open.a: '1' is not of type 'integer'"]
    assert problems({"labels": {"k": 1}}, schema) == ["labels.k: 1 is not of type 'string'"]
    assert "additionalProperties" not in schema          # the caller's schema is left as it was
