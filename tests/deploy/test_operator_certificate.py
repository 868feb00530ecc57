"""deploy/k8s issues the operator's certificate (webookctl) like the workloads', and only
operators can take it.

Rendered by kustomize as in ``test_manifests.py`` (whose strict schema checks cover these
objects too): a cert-manager Certificate names the identity the operator-only methods
accept (``spiffe://webook/operator``, X), for
client authentication only, short-lived and re-keyed, signed by the CA Issuer that signs
every workload's certificate; no pod mounts its Secret, and one Role lets the group
``webook-operators`` read that Secret and nothing else.
"""

from __future__ import annotations

from typing import Any

from kit.security.identity import dns_name, spiffe_id
from tests.deploy.test_manifests import (
    GATEWAY,
    _duration_seconds,
    _of_kind,
    overlay,
    rendered,
)
from webookctl.remote import OPERATOR

__all__ = ["overlay"]  # the fixture, parametrised over the overlays

SECRET = f"{OPERATOR}-tls"
OPERATORS_GROUP = "webook-operators"
# A copy on an operator's machine must not stay usable for long.
MAX_LIFETIME_S = 24 * 3600


def _operator_certificate(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (cert,) = (
        c
        for c in _of_kind(objects, "Certificate").values()
        if c["metadata"]["labels"].get("app.kubernetes.io/name") == OPERATOR
    )
    return cert


def test_the_operator_certificate_names_the_operator_for_client_auth_only(overlay: str) -> None:
    objects = rendered(overlay)
    spec = _operator_certificate(objects)["spec"]
    assert spec["secretName"] == SECRET
    assert spec["uris"] == [spiffe_id(OPERATOR)]
    assert spec["dnsNames"] == [dns_name(OPERATOR)]
    assert set(spec["usages"]) == {"client auth", "digital signature"}
    lifetime = _duration_seconds(spec["duration"])
    assert 0 < _duration_seconds(spec["renewBefore"]) < lifetime <= MAX_LIFETIME_S
    assert spec["privateKey"]["rotationPolicy"] == "Always"
    # Signed by the Issuer of the workloads' certificates: the servers' CA trusts it.
    gateway = _of_kind(objects, "Certificate")[f"{GATEWAY}-tls"]["spec"]
    assert spec["issuerRef"] == gateway["issuerRef"]


def _pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    pods = []
    for obj in objects:
        spec = obj.get("spec", {})
        template = spec.get("template") or spec.get("jobTemplate", {}).get("spec", {}).get(
            "template"
        )
        if template is not None:
            pods.append((f"{obj['kind']}/{obj['metadata']['name']}", template["spec"]))
    return pods


def test_no_pod_mounts_the_operator_certificate(overlay: str) -> None:
    pods = _pod_specs(rendered(overlay))
    assert pods
    for label, pod in pods:
        for volume in pod.get("volumes", []):
            assert volume.get("secret", {}).get("secretName") != SECRET, label
            for source in volume.get("projected", {}).get("sources", []):
                assert source.get("secret", {}).get("name") != SECRET, label


def test_only_the_operators_group_may_read_the_operator_certificate(overlay: str) -> None:
    objects = rendered(overlay)
    readers = []
    for binding in _of_kind(objects, "RoleBinding").values():
        role = _of_kind(objects, binding["roleRef"]["kind"])[binding["roleRef"]["name"]]
        reads_it = any(
            "secrets" in rule.get("resources", [])
            and (SECRET in rule.get("resourceNames", [SECRET]))
            for rule in role["rules"]
        )
        if reads_it:
            readers.append((role, binding))
    ((role, binding),) = readers
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [SECRET],
            "verbs": ["get"],
        }
    ]
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": OPERATORS_GROUP}
    ]
