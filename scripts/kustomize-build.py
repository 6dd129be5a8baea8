#!/usr/bin/env python3
"""Builds deploy/kubernetes as `kubectl kustomize` would, for the part of kustomize it uses, and
checks what holds the manifests together. kubectl is not on the machines the tests run on; this
is the stand-in (the README says so).

    scripts/kustomize-build.py deploy/kubernetes > built.yaml
    scripts/kustomize-build.py deploy/kubernetes --prometheus-job deploy/prometheus/scrape-kubernetes.yml

What it builds: `resources` (files, in order), `namespace` (set on every namespaced object),
`labels` with `pairs` (added to every object's metadata, not to selectors), `images` (`name` ->
`newName:newTag`). Any other field of the kustomization is refused, so a new one cannot be used
without teaching this script about it.

What it checks, failing with a message naming the object:
- every resource file exists and holds objects with apiVersion, kind and metadata.name;
- no two objects share a kind and name;
- every Service selects the pod template of a Deployment or StatefulSet, and its target ports
  are ports those pods name;
- every probe's named port exists, and the relay's probes ask /health/ready and /health/live;
- the PodDisruptionBudget and the HorizontalPodAutoscaler point at the relay's Deployment;
- the Ingress's backend is a Service and port that exist, and it routes no path to /metrics
  (Prometheus scrapes each pod; the metrics are not the public's);
- every NetworkPolicy selects the pods of a workload, and names ports those pods name; Redis's
  admits the relay's pods only;
- Redis asks for a password, and the relay's REDIS_URL carries the same Secret's; it runs with a
  --maxmemory and the noeviction policy;
- every image named in `images` is used by a container;
- with --prometheus-job, that the Kubernetes scrape job keeps the relay's pods: its label regex
  matches their app.kubernetes.io/name, they carry the prometheus.io annotations it reads, and
  the annotated port is the one the relay listens on (the Debian build of promtool these tests
  have cannot check a job with Kubernetes discovery itself).

Needs PyYAML (installed with kubernetes-validate by `make test`).
"""
import copy
import os
import sys

import yaml

KNOWN_FIELDS = {"apiVersion", "kind", "namespace", "labels", "resources", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}


class BuildError(Exception):
    pass


def load(directory):
    with open(os.path.join(directory, "kustomization.yaml")) as file:
        kustomization = yaml.safe_load(file)
    unknown = set(kustomization) - KNOWN_FIELDS
    if unknown:
        raise BuildError(f"kustomization.yaml: fields this build does not know: {sorted(unknown)}")
    objects = []
    for resource in kustomization.get("resources", []):
        path = os.path.join(directory, resource)
        if not os.path.isfile(path):
            raise BuildError(f"resource {resource}: no such file")
        with open(path) as file:
            for document in yaml.safe_load_all(file):
                if document is None:
                    continue
                for field in ("apiVersion", "kind"):
                    if field not in document:
                        raise BuildError(f"{resource}: an object without {field}")
                if not document.get("metadata", {}).get("name"):
                    raise BuildError(f"{resource}: a {document['kind']} without metadata.name")
                objects.append(document)
    return kustomization, objects


def pod_templates(objects):
    for item in objects:
        if item["kind"] in ("Deployment", "StatefulSet"):
            yield item, item["spec"]["template"]


def containers(objects):
    for owner, template in pod_templates(objects):
        for container in template["spec"].get("containers", []):
            yield owner, container


def build(kustomization, objects):
    built = []
    images = {image["name"]: image for image in kustomization.get("images", [])}
    used_images = set()
    for item in objects:
        item = copy.deepcopy(item)
        metadata = item["metadata"]
        if kustomization.get("namespace") and item["kind"] not in CLUSTER_SCOPED:
            metadata["namespace"] = kustomization["namespace"]
        for group in kustomization.get("labels", []):
            metadata.setdefault("labels", {}).update(group.get("pairs", {}))
            if group.get("includeSelectors") or group.get("includeTemplates"):
                raise BuildError("labels: includeSelectors and includeTemplates are not built here")
        built.append(item)
    for _, container in containers(built):
        name, _, tag = container["image"].partition(":")
        if name in images:
            image = images[name]
            used_images.add(name)
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    unused = set(images) - used_images
    if unused:
        raise BuildError(f"images: {sorted(unused)} named but used by no container")
    return built


def check(objects):
    seen = set()
    for item in objects:
        key = (item["kind"], item["metadata"]["name"])
        if key in seen:
            raise BuildError(f"two objects are {key[0]}/{key[1]}")
        seen.add(key)

    def named_ports(template):
        return {port["name"]: port["containerPort"] for c in template["spec"]["containers"] for port in c.get("ports", []) if "name" in port}

    by_kind = {}
    for item in objects:
        by_kind.setdefault(item["kind"], {})[item["metadata"]["name"]] = item

    for name, service in by_kind.get("Service", {}).items():
        selector = service["spec"].get("selector", {})
        matching = [t for _, t in pod_templates(objects) if selector.items() <= t["metadata"].get("labels", {}).items()]
        if not matching:
            raise BuildError(f"Service/{name} selects {selector}: no pod template carries those labels")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if isinstance(target, str) and not any(target in named_ports(t) for t in matching):
                raise BuildError(f"Service/{name}: target port {target!r} is named by none of its pods")

    for owner, template in pod_templates(objects):
        ports = named_ports(template)
        for container in template["spec"]["containers"]:
            for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
                probe = container.get(probe_name)
                if not probe or "httpGet" not in probe:
                    continue
                port = probe["httpGet"]["port"]
                if isinstance(port, str) and port not in ports:
                    raise BuildError(f"{owner['kind']}/{owner['metadata']['name']}: {probe_name} port {port!r} is not named")
    relay = by_kind.get("Deployment", {}).get("chat-relay")
    if relay is None:
        raise BuildError("no Deployment/chat-relay")
    container = relay["spec"]["template"]["spec"]["containers"][0]
    if container["readinessProbe"]["httpGet"]["path"] != "/health/ready":
        raise BuildError("the relay's readiness probe must ask /health/ready")
    if container["livenessProbe"]["httpGet"]["path"] != "/health/live":
        raise BuildError("the relay's liveness probe must ask /health/live")
    relay_labels = relay["spec"]["template"]["metadata"]["labels"]
    for name, budget in by_kind.get("PodDisruptionBudget", {}).items():
        if not budget["spec"]["selector"]["matchLabels"].items() <= relay_labels.items():
            raise BuildError(f"PodDisruptionBudget/{name} does not select the relay's pods")
    for name, scaler in by_kind.get("HorizontalPodAutoscaler", {}).items():
        target = scaler["spec"]["scaleTargetRef"]
        if (target["kind"], target["name"]) != ("Deployment", "chat-relay"):
            raise BuildError(f"HorizontalPodAutoscaler/{name} scales {target}, not the relay")
    for name, ingress in by_kind.get("Ingress", {}).items():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = by_kind.get("Service", {}).get(backend["name"])
                if service is None:
                    raise BuildError(f"Ingress/{name}: no Service/{backend['name']}")
                port = backend["port"]
                names = {p.get("name") for p in service["spec"]["ports"]}
                numbers = {p["port"] for p in service["spec"]["ports"]}
                if ("name" in port and port["name"] not in names) or ("number" in port and port["number"] not in numbers):
                    raise BuildError(f"Ingress/{name}: Service/{backend['name']} has no port {port}")
                routed = path.get("path", "/")
                if path.get("pathType") == "Prefix" and "/metrics".startswith(routed.rstrip("/") + "/") or routed == "/metrics":
                    raise BuildError(f"Ingress/{name}: path {routed} routes /metrics to the relays")
    check_network(objects, by_kind)


def check_network(objects, by_kind):
    templates = list(pod_templates(objects))

    def selected(selector):
        labels = selector.get("matchLabels", {})
        return [t for _, t in templates if labels.items() <= t["metadata"].get("labels", {}).items()]

    for name, policy in by_kind.get("NetworkPolicy", {}).items():
        matching = selected(policy["spec"]["podSelector"])
        if not matching:
            raise BuildError(f"NetworkPolicy/{name} selects no pod template")
        ports = {port["name"] for t in matching for c in t["spec"]["containers"] for port in c.get("ports", []) if "name" in port}
        for rule in policy["spec"].get("ingress", []):
            for port in rule.get("ports", []):
                if isinstance(port.get("port"), str) and port["port"] not in ports:
                    raise BuildError(f"NetworkPolicy/{name}: port {port['port']!r} is named by none of its pods")
    redis = by_kind.get("StatefulSet", {}).get("redis")
    if redis is None:
        return
    redis_labels = redis["spec"]["template"]["metadata"]["labels"]
    guards = [p for p in by_kind.get("NetworkPolicy", {}).values()
              if p["spec"]["podSelector"].get("matchLabels", {}).items() <= redis_labels.items()]
    relay_labels = by_kind["Deployment"]["chat-relay"]["spec"]["template"]["metadata"]["labels"]
    for policy in guards:
        for rule in policy["spec"].get("ingress", []):
            for peer in rule.get("from", [{}]):
                if peer.get("podSelector", {}).get("matchLabels", {}).items() > relay_labels.items() or "podSelector" not in peer:
                    raise BuildError(f"NetworkPolicy/{policy['metadata']['name']} lets more than the relay's pods reach Redis")
    if not guards:
        raise BuildError("no NetworkPolicy keeps Redis to the relay's pods")

    def secret_of(container, variable):
        for item in container.get("env", []):
            if item["name"] == variable:
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                return (ref["name"], ref["key"]) if ref else None
        return None

    redis_container = redis["spec"]["template"]["spec"]["containers"][0]
    args = redis_container.get("args", [])
    if "--requirepass" not in args:
        raise BuildError("Redis must ask for a password (--requirepass)")
    # A Redis without a bound is killed at its container's limit; one that evicts drops history
    # (and the markers that say what was dropped) without a word.
    if "--maxmemory" not in args or args[args.index("--maxmemory-policy") + 1 if "--maxmemory-policy" in args else 0] != "noeviction":
        raise BuildError("Redis must run with --maxmemory and --maxmemory-policy noeviction")
    relay_container = by_kind["Deployment"]["chat-relay"]["spec"]["template"]["spec"]["containers"][0]
    password = secret_of(redis_container, "REDIS_PASSWORD")
    if password is None or secret_of(relay_container, "REDIS_PASSWORD") != password:
        raise BuildError("Redis's password and the relay's must come from one Secret's key")
    url = next((item.get("value", "") for item in relay_container.get("env", []) if item["name"] == "REDIS_URL"), "")
    if "$(REDIS_PASSWORD)@" not in url:
        raise BuildError("the relay's REDIS_URL must carry $(REDIS_PASSWORD)")


def check_prometheus_job(path, objects):
    with open(path) as file:
        jobs = yaml.safe_load(file)
    if not isinstance(jobs, list) or len(jobs) != 1:
        raise BuildError(f"{path}: one scrape job expected")
    job = jobs[0]
    if job.get("job_name") != "chat-relay":
        raise BuildError(f"{path}: the alerts expect job_name chat-relay")
    if [sd.get("role") for sd in job.get("kubernetes_sd_configs", [])] != ["pod"]:
        raise BuildError(f"{path}: pods are discovered with one kubernetes_sd_configs of role pod")
    relay = next(item for item in objects if item["kind"] == "Deployment" and item["metadata"]["name"] == "chat-relay")
    template = relay["spec"]["template"]
    labels = template["metadata"].get("labels", {})
    annotations = template["metadata"].get("annotations", {})
    keeps = {tuple(rule["source_labels"]): rule["regex"] for rule in job.get("relabel_configs", []) if rule.get("action") == "keep"}
    if keeps.get(("__meta_kubernetes_pod_label_app_kubernetes_io_name",)) != labels.get("app.kubernetes.io/name"):
        raise BuildError(f"{path}: the job does not keep pods labelled app.kubernetes.io/name={labels.get('app.kubernetes.io/name')}")
    if keeps.get(("__meta_kubernetes_pod_annotation_prometheus_io_scrape",)) != annotations.get("prometheus.io/scrape"):
        raise BuildError(f"{path}: the relay's pods are not annotated prometheus.io/scrape as the job keeps")
    ports = [p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])]
    if str(annotations.get("prometheus.io/port")) not in {str(port) for port in ports}:
        raise BuildError("the relay's prometheus.io/port annotation is not a port its container listens on")
    if annotations.get("prometheus.io/path", "/metrics") != "/metrics":
        raise BuildError("the relay's metrics are at /metrics")


def main():
    arguments = sys.argv[1:]
    job = None
    if len(arguments) == 3 and arguments[1] == "--prometheus-job":
        job = arguments[2]
        arguments = arguments[:1]
    if len(arguments) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        kustomization, objects = load(arguments[0])
        check(objects)
        if job:
            check_prometheus_job(job, objects)
        built = build(kustomization, objects)
    except (BuildError, KeyError, TypeError, yaml.YAMLError) as error:
        print(f"kustomize-build: {error!r}" if not isinstance(error, BuildError) else f"kustomize-build: {error}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(built, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
