"""A small, offline stand-in for `kustomize build`, for machines without kubectl or
kustomize (CI installs neither).

It implements exactly the subset Belfry's overlays use, and the tests compare its output
with `kubectl kustomize` whenever that binary is on PATH, so it cannot silently drift:

- `resources`: files (multi-document YAML) and directories holding a kustomization.yaml;
- `namespace`: set on every namespaced object;
- `images`: `newName` / `newTag` for containers whose image name matches `name`;
- `replicas`: `spec.replicas` of the named Deployment;
- `patches` with `path`: strategic-merge patches located by the patch's kind and name.
  Maps merge recursively, `null` deletes a key, lists of the fields in MERGE_KEYS merge
  element-wise by that key (as Kubernetes' strategic merge does for those fields), and
  every other list is replaced whole.

Anything else in a kustomization.yaml is refused, so a new feature in an overlay fails
the tests loudly rather than rendering something kustomize would not.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Object = dict[str, Any]

SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "replicas", "patches"}
# Strategic-merge keys of the list fields our patches touch (from the Kubernetes API).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


def load_documents(path: Path) -> list[Object]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def build(directory: Path) -> list[Object]:
    """Render the kustomization in `directory`."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise ValueError(f"{directory}: kustomization fields not supported here: {unknown}")
    objects: list[Object] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        objects += build(target) if target.is_dir() else load_documents(target)
    for patch_entry in kustomization.get("patches", []):
        if set(patch_entry) != {"path"}:
            raise ValueError(f"{directory}: only `patches: - path:` is supported")
        for patch in load_documents(directory / patch_entry["path"]):
            target_obj = find(objects, patch["kind"], patch["metadata"]["name"])
            merged = merge(target_obj, patch)
            target_obj.clear()
            target_obj.update(merged)
    for item in kustomization.get("replicas", []):
        find(objects, "Deployment", item["name"])["spec"]["replicas"] = item["count"]
    for image in kustomization.get("images", []):
        for obj in objects:
            for container in containers(obj):
                set_image(container, image)
    namespace = kustomization.get("namespace")
    if namespace:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = namespace
    return objects


def find(objects: list[Object], kind: str, name: str) -> Object:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        raise ValueError(f"patch target {kind}/{name}: {len(found)} matches")
    return found[0]


def merge(base: Any, patch: Any, field: str | None = None) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            elif key in out:
                out[key] = merge(out[key], value, key)
            else:
                out[key] = copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(patch, list) and field in MERGE_KEYS:
        key = MERGE_KEYS[field]
        out_list = copy.deepcopy(base)
        for item in patch:
            match = next((i for i, b in enumerate(out_list) if b.get(key) == item.get(key)), None)
            if match is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[match] = merge(out_list[match], item)
        return out_list
    return copy.deepcopy(patch)


def containers(obj: Object) -> list[Object]:
    spec = obj.get("spec", {})
    if obj.get("kind") == "CronJob":  # its pod template sits one level deeper
        spec = spec.get("jobTemplate", {}).get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return [*pod.get("containers", []), *pod.get("initContainers", [])]


def set_image(container: Object, image: Object) -> None:
    current = container.get("image", "")
    name, _, tag = current.partition(":")
    if name != image["name"]:
        return
    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
