#!/usr/bin/env python3
"""Checks the examples of docs/RUNNING-ANYWHERE.md offline, with no cluster and no CI service.

kubectl cannot do this: `kubectl apply|create --dry-run=client` asks a server for its API groups
and, to validate, for its OpenAPI schema (`--validate=false` checks nothing). So the Kubernetes
objects are checked here against tables of the Kubernetes API written for the kinds the
examples use: every field name of Job, PodSpec, Container, SecurityContext, Volume and the types
under them, each field's type, the required fields and the enumerations (compared field by field
with the API of Kubernetes 1.36 when written). A field whose type the examples do not use is
known by name only, and its value is accepted unchecked.
Besides the schema, what the API server or the kubelet would refuse or silently get wrong: a
Job's restartPolicy, duplicate container names, a mount of a volume that does not exist, a
$(VAR) in args with no such variable, hostUsers: false beside a host namespace.

Every kiln command line in the examples and the docs (Kubernetes args, CI scripts, shell blocks)
is checked against `kiln COMMAND [SUBCOMMAND] --help` of the binary given: the command exists
and takes every option named. The CI files are parsed as YAML and checked for their structure
(GitHub Actions: jobs, steps, needs, matrix references; GitLab CI: jobs with a script). Shell
scripts pass `bash -n` and shellcheck. `kubectl kustomize` renders the farm when kubectl is
installed (it needs no server).

Before the examples, a self-test breaks copies of them in known ways and requires each break to
be found, so that the checks cannot silently stop checking.

Usage: check_examples.py --kiln KILN [--root REPO]
"""
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

# --- The Kubernetes API, as far as the examples reach ----------------------------------------
# A field's type: a scalar name below, ("list", T), ("map", T), a type of TYPES, or "any".
SCALARS = {"string", "integer", "boolean", "quantity", "int-or-string"}
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[munkMGTPE]|[KMGTPE]i)?$")

# (fields, required fields)
TYPES = {
    "ObjectMeta": ({
        "name": "string", "generateName": "string", "namespace": "string",
        "labels": ("map", "string"), "annotations": ("map", "string"),
        "finalizers": ("list", "string"), "ownerReferences": ("list", "any"),
        "uid": "string", "resourceVersion": "string", "generation": "integer",
        "creationTimestamp": "any", "deletionTimestamp": "any",
        "deletionGracePeriodSeconds": "integer", "managedFields": ("list", "any"),
        "selfLink": "string",
    }, []),
    "Job": ({
        "apiVersion": "string", "kind": "string", "metadata": "ObjectMeta", "spec": "JobSpec",
        "status": "any",
    }, ["apiVersion", "kind", "metadata", "spec"]),
    "JobSpec": ({
        "activeDeadlineSeconds": "integer", "backoffLimit": "integer",
        "backoffLimitPerIndex": "integer", "completionMode": "string", "completions": "integer",
        "managedBy": "string", "manualSelector": "boolean", "maxFailedIndexes": "integer",
        "parallelism": "integer", "podFailurePolicy": "any", "podReplacementPolicy": "string",
        "selector": "any", "successPolicy": "any", "suspend": "boolean",
        "template": "PodTemplateSpec", "ttlSecondsAfterFinished": "integer",
    }, ["template"]),
    "PodTemplateSpec": ({"metadata": "ObjectMeta", "spec": "PodSpec"}, []),
    "PodSpec": ({
        "activeDeadlineSeconds": "integer", "affinity": "any",
        "automountServiceAccountToken": "boolean", "containers": ("list", "Container"),
        "dnsConfig": "any", "dnsPolicy": "string", "enableServiceLinks": "boolean",
        "ephemeralContainers": ("list", "any"), "hostAliases": ("list", "any"),
        "hostIPC": "boolean", "hostNetwork": "boolean", "hostPID": "boolean",
        "hostUsers": "boolean", "hostname": "string", "hostnameOverride": "string",
        "imagePullSecrets": ("list", "LocalObjectReference"),
        "initContainers": ("list", "Container"), "nodeName": "string",
        "nodeSelector": ("map", "string"), "os": "any", "overhead": ("map", "quantity"),
        "preemptionPolicy": "string", "priority": "integer", "priorityClassName": "string",
        "readinessGates": ("list", "any"), "resourceClaims": ("list", "any"),
        "resources": "ResourceRequirements", "restartPolicy": "string",
        "runtimeClassName": "string", "schedulerName": "string",
        "schedulingGates": ("list", "any"), "schedulingGroup": "any",
        "securityContext": "PodSecurityContext",
        "serviceAccount": "string", "serviceAccountName": "string",
        "setHostnameAsFQDN": "boolean", "shareProcessNamespace": "boolean",
        "subdomain": "string", "terminationGracePeriodSeconds": "integer",
        "tolerations": ("list", "any"), "topologySpreadConstraints": ("list", "any"),
        "volumes": ("list", "Volume"),
    }, ["containers"]),
    "Container": ({
        "args": ("list", "string"), "command": ("list", "string"), "env": ("list", "EnvVar"),
        "envFrom": ("list", "any"), "image": "string", "imagePullPolicy": "string",
        "lifecycle": "any", "livenessProbe": "any", "name": "string", "ports": ("list", "any"),
        "readinessProbe": "any", "resizePolicy": ("list", "any"),
        "resources": "ResourceRequirements", "restartPolicy": "string",
        "restartPolicyRules": ("list", "any"), "securityContext": "SecurityContext",
        "startupProbe": "any", "stdin": "boolean", "stdinOnce": "boolean",
        "terminationMessagePath": "string", "terminationMessagePolicy": "string",
        "tty": "boolean", "volumeDevices": ("list", "any"),
        "volumeMounts": ("list", "VolumeMount"), "workingDir": "string",
    }, ["name"]),
    "SecurityContext": ({
        "allowPrivilegeEscalation": "boolean", "appArmorProfile": "AppArmorProfile",
        "capabilities": "Capabilities", "privileged": "boolean", "procMount": "string",
        "readOnlyRootFilesystem": "boolean", "runAsGroup": "integer", "runAsNonRoot": "boolean",
        "runAsUser": "integer", "seLinuxOptions": "any", "seccompProfile": "SeccompProfile",
        "windowsOptions": "any",
    }, []),
    "PodSecurityContext": ({
        "appArmorProfile": "AppArmorProfile", "fsGroup": "integer",
        "fsGroupChangePolicy": "string", "runAsGroup": "integer", "runAsNonRoot": "boolean",
        "runAsUser": "integer", "seLinuxChangePolicy": "string", "seLinuxOptions": "any",
        "seccompProfile": "SeccompProfile", "supplementalGroups": ("list", "integer"),
        "supplementalGroupsPolicy": "string", "sysctls": ("list", "any"),
        "windowsOptions": "any",
    }, []),
    "SeccompProfile": ({"localhostProfile": "string", "type": "string"}, ["type"]),
    "AppArmorProfile": ({"localhostProfile": "string", "type": "string"}, ["type"]),
    "Capabilities": ({"add": ("list", "string"), "drop": ("list", "string")}, []),
    "EnvVar": ({"name": "string", "value": "string", "valueFrom": "EnvVarSource"}, ["name"]),
    "EnvVarSource": ({
        "configMapKeyRef": "ConfigMapKeySelector", "fieldRef": "any", "fileKeyRef": "any",
        "resourceFieldRef": "any", "secretKeyRef": "SecretKeySelector",
    }, []),
    "ConfigMapKeySelector": ({"key": "string", "name": "string", "optional": "boolean"},
                             ["key"]),
    "SecretKeySelector": ({"key": "string", "name": "string", "optional": "boolean"}, ["key"]),
    "ResourceRequirements": ({
        "claims": ("list", "any"), "limits": ("map", "quantity"),
        "requests": ("map", "quantity"),
    }, []),
    "VolumeMount": ({
        "mountPath": "string", "mountPropagation": "string", "name": "string",
        "readOnly": "boolean", "recursiveReadOnly": "string", "subPath": "string",
        "subPathExpr": "string",
    }, ["mountPath", "name"]),
    "Volume": ({
        "name": "string", "configMap": "ConfigMapVolumeSource", "emptyDir": "EmptyDirVolumeSource",
        "persistentVolumeClaim": "PersistentVolumeClaimVolumeSource",
        "secret": "SecretVolumeSource",
        **{source: "any" for source in (
            "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi",
            "downwardAPI", "ephemeral", "fc", "flexVolume", "flocker", "gcePersistentDisk",
            "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs", "photonPersistentDisk",
            "portworxVolume", "projected", "quobyte", "rbd", "scaleIO", "storageos",
            "vsphereVolume")},
    }, ["name"]),
    "EmptyDirVolumeSource": ({"medium": "string", "sizeLimit": "quantity"}, []),
    "ConfigMapVolumeSource": ({
        "defaultMode": "integer", "items": ("list", "KeyToPath"), "name": "string",
        "optional": "boolean",
    }, []),
    "SecretVolumeSource": ({
        "defaultMode": "integer", "items": ("list", "KeyToPath"), "optional": "boolean",
        "secretName": "string",
    }, []),
    "PersistentVolumeClaimVolumeSource": ({"claimName": "string", "readOnly": "boolean"},
                                          ["claimName"]),
    "KeyToPath": ({"key": "string", "mode": "integer", "path": "string"}, ["key", "path"]),
    "LocalObjectReference": ({"name": "string"}, []),
    "Kustomization": ({
        "apiVersion": "string", "kind": "string", "metadata": "any",
        "resources": ("list", "string"), "components": ("list", "string"),
        "namespace": "string", "namePrefix": "string", "nameSuffix": "string",
        "labels": ("list", "any"), "commonLabels": ("map", "string"),
        "commonAnnotations": ("map", "string"), "images": ("list", "any"),
        "patches": ("list", "any"), "replicas": ("list", "any"),
        "replacements": ("list", "any"), "configMapGenerator": ("list", "any"),
        "secretGenerator": ("list", "any"), "generatorOptions": "any",
        "buildMetadata": ("list", "string"), "sortOptions": "any", "openapi": "any",
        "crds": ("list", "string"), "helmCharts": ("list", "any"),
    }, []),
}

# apiVersion/kind → the type of the whole object. Other kinds are refused: add them here first.
KINDS = {
    ("batch/v1", "Job"): "Job",
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): "Kustomization",
}

ENUMS = {
    ("SeccompProfile", "type"): {"RuntimeDefault", "Unconfined", "Localhost"},
    ("AppArmorProfile", "type"): {"RuntimeDefault", "Unconfined", "Localhost"},
    ("Container", "imagePullPolicy"): {"Always", "IfNotPresent", "Never"},
    ("Container", "terminationMessagePolicy"): {"File", "FallbackToLogsOnError"},
    ("SecurityContext", "procMount"): {"Default", "Unmasked"},
    ("EmptyDirVolumeSource", "medium"): {"", "Memory", "HugePages"},
    ("PodSpec", "restartPolicy"): {"Always", "OnFailure", "Never"},
    ("JobSpec", "completionMode"): {"NonIndexed", "Indexed"},
    ("JobSpec", "podReplacementPolicy"): {"TerminatingOrFailed", "Failed"},
    ("VolumeMount", "mountPropagation"): {"None", "HostToContainer", "Bidirectional"},
}

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_value(value, spec, path, problems, owner=None, field=None):
    """Checks `value` against the type `spec`; appends "path: message" to problems."""
    if spec == "any":
        return
    if isinstance(spec, tuple):
        container, item = spec
        if container == "list":
            if not isinstance(value, list):
                problems.append(f"{path}: a list expected, found {type(value).__name__}")
                return
            for i, element in enumerate(value):
                check_value(element, item, f"{path}[{i}]", problems)
        else:
            if not isinstance(value, dict):
                problems.append(f"{path}: a map expected, found {type(value).__name__}")
                return
            for key, element in value.items():
                if not isinstance(key, str):
                    problems.append(f"{path}: key {key!r} is not a string")
                check_value(element, item, f"{path}.{key}", problems)
        return
    if spec in SCALARS:
        ok = {
            "string": isinstance(value, str),
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "quantity": (isinstance(value, (int, float)) and not isinstance(value, bool))
            or (isinstance(value, str) and bool(QUANTITY.match(value))),
            "int-or-string": isinstance(value, (int, str)) and not isinstance(value, bool),
        }[spec]
        if not ok:
            problems.append(f"{path}: {spec} expected, found {value!r}")
        elif (owner, field) in ENUMS and value not in ENUMS[(owner, field)]:
            problems.append(f"{path}: {value!r} is none of {sorted(ENUMS[(owner, field)])}")
        return
    fields, required = TYPES[spec]
    if not isinstance(value, dict):
        problems.append(f"{path}: a {spec} (a map) expected, found {value!r}")
        return
    for name in required:
        if name not in value:
            problems.append(f"{path}: {spec} requires the field {name}")
    for name, element in value.items():
        if name not in fields:
            problems.append(f"{path}.{name}: {spec} has no field {name!r}")
            continue
        check_value(element, fields[name], f"{path}.{name}", problems, spec, name)


def check_pod(pod, path, problems):
    """What the API server's validation or the kubelet adds to the schema for a Job's pod."""
    if not isinstance(pod, dict):
        return
    if pod.get("restartPolicy") not in ("Never", "OnFailure"):
        problems.append(f"{path}.restartPolicy: a Job's pod needs Never or OnFailure")
    if pod.get("hostUsers") is False:
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(host):
                problems.append(f"{path}.{host}: not allowed with hostUsers: false")
    volumes = {v.get("name") for v in pod.get("volumes") or [] if isinstance(v, dict)}
    mounted, names = set(), set()
    containers = [("initContainers", c) for c in pod.get("initContainers") or []]
    containers += [("containers", c) for c in pod.get("containers") or []]
    for i, (group, c) in enumerate(containers):
        if not isinstance(c, dict):
            continue
        where = f"{path}.{group}[{c.get('name', i)}]"
        if c.get("name") in names:
            problems.append(f"{where}: a second container named {c.get('name')!r}")
        names.add(c.get("name"))
        if c.get("name") and not DNS_LABEL.match(str(c["name"])):
            problems.append(f"{where}.name: not a DNS label")
        if not c.get("image"):
            problems.append(f"{where}.image: a Job's container needs an image")
        for m in c.get("volumeMounts") or []:
            if isinstance(m, dict):
                mounted.add(m.get("name"))
                if m.get("name") not in volumes:
                    problems.append(f"{where}.volumeMounts: no volume named {m.get('name')!r}")
        defined = {e.get("name") for e in c.get("env") or [] if isinstance(e, dict)}
        for arg in (c.get("args") or []) + (c.get("command") or []):
            for ref in re.findall(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", str(arg)):
                if ref not in defined:
                    problems.append(f"{where}.args: $({ref}) is no variable of the container, "
                                    "so Kubernetes would pass it literally")
        for profile in ("seccompProfile", "appArmorProfile"):
            p = (c.get("securityContext") or {}).get(profile) or {}
            if p.get("type") == "Localhost" and not p.get("localhostProfile"):
                problems.append(f"{where}.securityContext.{profile}: Localhost needs "
                                "localhostProfile")
    for v in sorted(volumes - mounted, key=str):
        problems.append(f"{path}.volumes: {v!r} is mounted by no container")


def check_kubernetes_file(path, problems, kustomize_dir=None):
    """Returns the objects in the file, checked."""
    try:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as e:
        problems.append(f"{path}: not YAML: {e}")
        return []
    if not documents:
        problems.append(f"{path}: no object")
    for n, obj in enumerate(documents):
        where = f"{path}" + (f"[{n}]" if len(documents) > 1 else "")
        check_kubernetes_object(obj, where, problems, kustomize_dir or path.parent)
    return documents


def check_kubernetes_object(obj, where, problems, base_dir):
    if not isinstance(obj, dict):
        problems.append(f"{where}: an object expected")
        return
    kind = KINDS.get((obj.get("apiVersion"), obj.get("kind")))
    if kind is None:
        problems.append(f"{where}: apiVersion {obj.get('apiVersion')!r} kind "
                        f"{obj.get('kind')!r} is not one this check knows")
        return
    where = f"{where} ({obj['kind']})"
    check_value(obj, kind, where, problems)
    if kind == "Kustomization":
        for r in obj.get("resources") or []:
            if isinstance(r, str) and not (base_dir / r).exists():
                problems.append(f"{where}.resources: {r} does not exist")
        return
    name = (obj.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not DNS_SUBDOMAIN.match(name) or len(name) > 63:
        problems.append(f"{where}.metadata.name: {name!r} is not a valid Job name")
    template = (obj.get("spec") or {}).get("template") or {}
    check_pod(template.get("spec"), f"{where}.spec.template.spec", problems)


# --- kiln command lines ----------------------------------------------------------------------
ISOLATION = {"auto", "oci", "rootless", "chroot"}
NETWORK = {"default", "none", "host"}
OPTION = re.compile(r"^  (?:-(\w) \[ --([\w-]+) \]|--([\w-]+))")


class Kiln:
    """The options of each kiln (sub)command, read from its --help."""

    def __init__(self, binary):
        self.binary = binary
        self.options = {}

    def options_of(self, words):
        key = tuple(words)
        if key not in self.options:
            run = subprocess.run([self.binary, *words, "--help"], capture_output=True, text=True)
            if run.returncode != 0:
                self.options[key] = None
            else:
                names = set()
                for line in run.stdout.splitlines():
                    m = OPTION.match(line)
                    if m:
                        names.update("-" + s for s in [m.group(1)] if s)
                        names.update("--" + s for s in (m.group(2), m.group(3)) if s)
                self.options[key] = names
        return self.options[key]


def check_kiln_args(args, where, kiln, problems):
    """args: the words after `kiln`."""
    if not args:
        return
    words = [args[0]]
    rest = args[1:]
    if args[0] in ("manifest", "key") and rest and not rest[0].startswith("-"):
        words.append(rest[0])
        rest = rest[1:]
    options = kiln.options_of(words)
    if options is None:
        problems.append(f"{where}: `kiln {' '.join(words)}` is no kiln command")
        return
    values = {}
    for i, word in enumerate(rest):
        if not word.startswith("-") or word == "-":
            continue
        name = word.split("=", 1)[0]
        if name not in options:
            problems.append(f"{where}: `kiln {' '.join(words)}` has no option {name}")
            continue
        value = word.split("=", 1)[1] if "=" in word else (rest[i + 1] if i + 1 < len(rest)
                                                            else "")
        values[name] = value
    if words == ["build"]:
        if "--isolation" in values and values["--isolation"] not in ISOLATION:
            problems.append(f"{where}: --isolation {values['--isolation']} is none of "
                            f"{sorted(ISOLATION)}")
        if "--network" in values and values["--network"] not in NETWORK:
            problems.append(f"{where}: --network {values['--network']} is none of "
                            f"{sorted(NETWORK)}")


KILN_IMAGE = re.compile(r"(^|/)kiln(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")
# The options of `docker run` and `podman run` that take a value as the next word.
RUN_VALUE_OPTIONS = {"-v", "--volume", "-e", "--env", "--env-file", "-w", "--workdir", "-u",
                     "--user", "--name", "--network", "--net", "--mount", "--security-opt",
                     "--userns", "--entrypoint", "-p", "--publish", "--device", "--cap-add",
                     "--cap-drop", "--tmpfs", "-m", "--memory", "--cpus", "--platform",
                     "--pull", "--label", "-l", "--hostname", "-h", "--add-host",
                     "--annotation", "--uidmap", "--gidmap", "--subuidname", "--subgidname"}


def strip_comment(line):
    """The line without a shell comment: from a # that starts a word, outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i]
    return line


def kiln_commands(script):
    """The argument lists of the kiln commands in a shell script: `kiln ARGS` and
    `docker|podman run [OPTIONS] KILN_IMAGE ARGS`, one command per line (after joining
    backslash continuations) or per segment between ; | && || ( )."""
    commands = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(strip_comment(line), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = ""
        try:
            tokens = list(lexer)
        except ValueError as e:
            raise ValueError(f"cannot split {line.strip()!r}: {e}") from e
        segment = []
        for token in tokens + [";"]:
            if set(token) <= set(";|&()"):
                commands.append(segment)
                segment = []
            elif not segment and token in ("do", "then", "else", "!"):
                continue
            else:
                segment.append(token)
    found = []
    for words in commands:
        if words and words[0] == "kiln":
            found.append(words[1:])
        elif len(words) > 2 and words[0] in ("docker", "podman") and words[1] == "run":
            i = 2
            while i < len(words) and words[i].startswith("-"):
                i += 2 if words[i] in RUN_VALUE_OPTIONS else 1
            if i < len(words) and KILN_IMAGE.search(words[i]):
                found.append(words[i + 1:])
    return found


def check_scripts(scripts, kiln, problems):
    """scripts: (where, shell text) pairs."""
    count = 0
    for where, script in scripts:
        try:
            commands = kiln_commands(script)
        except ValueError as e:
            problems.append(f"{where}: {e}")
            continue
        for args in commands:
            check_kiln_args(args, where, kiln, problems)
            count += 1
    return count


def markdown_shell_blocks(path):
    blocks, block, lang = [], None, None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            if block is None:
                lang, block, start = line[3:].strip(), [], n
            else:
                if lang in ("sh", "bash", "shell"):
                    blocks.append((f"{path}:{start}", "\n".join(block)))
                block = None
        elif block is not None:
            block.append(line)
    return blocks


def kubernetes_kiln_args(obj):
    """(container name, args) of the containers running the kiln image (entrypoint kiln)."""
    pod = (((obj.get("spec") or {}).get("template") or {}).get("spec")) or {}
    for c in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        if isinstance(c, dict) and KILN_IMAGE.search(str(c.get("image", ""))) and \
                not c.get("command"):
            yield c.get("name"), [str(a) for a in c.get("args") or []]


# --- CI files --------------------------------------------------------------------------------
GITHUB_JOB = {"name", "needs", "permissions", "runs-on", "environment", "concurrency", "outputs",
              "env", "defaults", "if", "steps", "timeout-minutes", "strategy",
              "continue-on-error", "container", "services", "uses", "with", "secrets"}
GITHUB_STEP = {"id", "if", "name", "uses", "run", "shell", "with", "env", "continue-on-error",
               "timeout-minutes", "working-directory"}
GITHUB_CONTAINER = {"image", "credentials", "env", "ports", "volumes", "options"}


def check_github(path, problems):
    doc = yaml.safe_load(path.read_text())
    scripts = []
    if not isinstance(doc, dict):
        problems.append(f"{path}: a workflow is a map")
        return scripts
    # YAML 1.1 reads the key `on` as true, as PyYAML does; GitHub reads it as "on".
    if "on" not in doc and True not in doc:
        problems.append(f"{path}: no `on:` (what starts the workflow)")
    jobs = doc.get("jobs")
    if not isinstance(jobs, dict) or not jobs:
        problems.append(f"{path}: no jobs")
        return scripts
    for name, job in jobs.items():
        where = f"{path}: jobs.{name}"
        if not isinstance(job, dict):
            problems.append(f"{where}: a map expected")
            continue
        for key in job:
            if key not in GITHUB_JOB:
                problems.append(f"{where}: unknown key {key!r}")
        if "runs-on" not in job and "uses" not in job:
            problems.append(f"{where}: no runs-on")
        needs = job.get("needs", [])
        for need in [needs] if isinstance(needs, str) else needs:
            if need not in jobs:
                problems.append(f"{where}.needs: no job {need!r}")
        container = job.get("container")
        if isinstance(container, dict):
            for key in container:
                if key not in GITHUB_CONTAINER:
                    problems.append(f"{where}.container: unknown key {key!r}")
            if "image" not in container:
                problems.append(f"{where}.container: no image")
        matrix = ((job.get("strategy") or {}).get("matrix")) or {}
        matrix_keys = {k for k in matrix if k not in ("include", "exclude")}
        for entry in matrix.get("include") or []:
            matrix_keys.update(entry)
        for ref in re.findall(r"\$\{\{\s*matrix\.([\w-]+)", yaml.safe_dump(job)):
            if ref not in matrix_keys:
                problems.append(f"{where}: matrix.{ref} is no key of the job's matrix")
        steps = job.get("steps") or []
        if "uses" not in job and not steps:
            problems.append(f"{where}: no steps")
        for i, step in enumerate(steps):
            swhere = f"{where}.steps[{i}]"
            if not isinstance(step, dict):
                problems.append(f"{swhere}: a map expected")
                continue
            for key in step:
                if key not in GITHUB_STEP:
                    problems.append(f"{swhere}: unknown key {key!r}")
            if ("run" in step) == ("uses" in step):
                problems.append(f"{swhere}: a step has either run or uses")
            if "run" in step:
                scripts.append((swhere, str(step["run"])))
    return scripts


GITLAB_RESERVED = {"default", "include", "stages", "variables", "workflow", "image", "services",
                   "cache", "before_script", "after_script", "spec"}
GITLAB_JOB = {"after_script", "allow_failure", "artifacts", "before_script", "cache", "coverage",
              "dependencies", "environment", "except", "extends", "hooks", "id_tokens", "image",
              "inherit", "interruptible", "needs", "only", "pages", "parallel", "release",
              "resource_group", "retry", "rules", "script", "secrets", "services", "stage",
              "tags", "timeout", "trigger", "variables", "when", "identity", "run",
              "manual_confirmation"}
GITLAB_RULE = {"if", "changes", "exists", "when", "allow_failure", "variables", "needs",
               "interruptible"}


def check_gitlab(path, problems):
    doc = yaml.safe_load(path.read_text())
    scripts = []
    if not isinstance(doc, dict):
        problems.append(f"{path}: a pipeline is a map")
        return scripts
    jobs = {k: v for k, v in doc.items() if k not in GITLAB_RESERVED and not k.startswith(".")}
    if not jobs:
        problems.append(f"{path}: no job")
    for name, job in jobs.items():
        where = f"{path}: {name}"
        if not isinstance(job, dict):
            problems.append(f"{where}: a map expected")
            continue
        for key in job:
            if key not in GITLAB_JOB:
                problems.append(f"{where}: unknown key {key!r}")
        if "script" not in job and "trigger" not in job and "extends" not in job:
            problems.append(f"{where}: no script")
        image = job.get("image")
        if isinstance(image, dict) and "name" not in image:
            problems.append(f"{where}.image: no name")
        for rule in job.get("rules") or []:
            for key in rule if isinstance(rule, dict) else []:
                if key not in GITLAB_RULE:
                    problems.append(f"{where}.rules: unknown key {key!r}")
        for section in ("before_script", "script", "after_script"):
            lines = job.get(section) or []
            for i, line in enumerate([lines] if isinstance(lines, str) else lines):
                if not isinstance(line, str):
                    problems.append(f"{where}.{section}[{i}]: a string expected")
                else:
                    scripts.append((f"{where}.{section}[{i}]", line))
    return scripts


def check_shell_script(path, problems):
    run = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    if run.returncode != 0:
        problems.append(f"{path}: bash -n: {run.stderr.strip()}")
    if shutil.which("shellcheck"):
        run = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True)
        if run.returncode != 0:
            problems.append(f"{path}: shellcheck:\n{run.stdout.strip()}")
    if not os.access(path, os.X_OK):
        problems.append(f"{path}: not executable")
    return [(str(path), path.read_text())]


# --- the whole check -------------------------------------------------------------------------
def check_all(root, kiln, notes):
    """Returns the problems found in the examples under `root` (a repository checkout)."""
    problems = []
    k8s = root / "examples" / "kubernetes"
    manifests = sorted(p for p in k8s.rglob("*.yaml"))
    if len(manifests) < 6:
        problems.append(f"{k8s}: expected the Jobs and the kustomization, found {manifests}")
    scripts = []
    for path in manifests:
        for obj in check_kubernetes_file(path, problems):
            if isinstance(obj, dict) and obj.get("kind") == "Job":
                for name, args in kubernetes_kiln_args(obj):
                    where = f"{path}: container {name}"
                    # Kubernetes passes args as they are; $(VAR)s are variables, checked above.
                    check_kiln_args(args, where, kiln, problems)
                    notes["kiln command lines"] += 1
    for path in sorted(k8s.rglob("*.sh")):
        scripts += check_shell_script(path, problems)
    scripts += check_github(root / "examples" / "ci" / "github-actions.yml", problems)
    scripts += check_gitlab(root / "examples" / "ci" / "gitlab-ci.yml", problems)
    for doc in (root / "docs" / "RUNNING-ANYWHERE.md", k8s / "README.md"):
        scripts += markdown_shell_blocks(doc)
    notes["kiln command lines"] += check_scripts(scripts, kiln, problems)
    notes["files"] = len(manifests) + 2 + 2 + len(list(k8s.rglob("*.sh")))
    if shutil.which("kubectl"):
        for kustomization in sorted(k8s.rglob("kustomization.yaml")):
            run = subprocess.run(["kubectl", "kustomize", str(kustomization.parent)],
                                 capture_output=True, text=True,
                                 env={**os.environ, "KUBECONFIG": os.devnull})
            if run.returncode != 0:
                problems.append(f"{kustomization}: kubectl kustomize: {run.stderr.strip()}")
                continue
            rendered = [d for d in yaml.safe_load_all(run.stdout) if d is not None]
            for n, obj in enumerate(rendered):
                check_kubernetes_object(obj, f"{kustomization} rendered[{n}]", problems,
                                        kustomization.parent)
            notes["kustomize renders"] += 1
    return problems


# The self-test: each break is made in a fresh copy of the examples, and the check must report a
# problem containing the expected text, or it has gone blind to that kind of mistake.
def _copy_examples(root, scratch):
    copy_root = scratch / "root"
    shutil.rmtree(copy_root, ignore_errors=True)
    for part in ("examples/kubernetes", "examples/ci"):
        shutil.copytree(root / part, copy_root / part, symlinks=True)
    (copy_root / "docs").mkdir(parents=True)
    shutil.copy(root / "docs" / "RUNNING-ANYWHERE.md", copy_root / "docs")
    return copy_root


def _in_yaml(name, edit):
    """A break that loads examples/kubernetes/NAME, applies edit to it and writes it back."""
    def apply(copy_root):
        path = copy_root / "examples" / "kubernetes" / name
        obj = yaml.safe_load(path.read_text())
        edit(obj)
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return apply


def _in_text(rel, old, new):
    """A break that replaces the first `old` in the file `rel` with `new`."""
    def apply(copy_root):
        text = (copy_root / rel).read_text()
        if old not in text:
            raise ValueError(f"{rel} no longer contains {old!r}")
        (copy_root / rel).write_text(text.replace(old, new, 1))
    return apply


def _pod(obj):
    return obj["spec"]["template"]["spec"]


def _container(obj):
    return _pod(obj)["containers"][0]


BREAKS = [
    ("a misspelt pod field", _in_yaml(
        "job-rootless.yaml", lambda o: _pod(o).update(hostUser=_pod(o).pop("hostUsers"))),
     "no field 'hostUser'"),
    ("a string where an integer goes", _in_yaml(
        "job-chroot.yaml", lambda o: _pod(o)["securityContext"].update(runAsUser="0")),
     "integer expected"),
    ("a missing required field", _in_yaml(
        "job-chroot.yaml", lambda o: _container(o).pop("name")),
     "requires the field name"),
    ("an unknown seccomp type", _in_yaml(
        "job-rootless.yaml",
        lambda o: _container(o)["securityContext"]["seccompProfile"].update(type="Unconfine")),
     "'Unconfine' is none of"),
    ("a mount of no volume", _in_yaml(
        "job-chroot.yaml", lambda o: _container(o)["volumeMounts"][0].update(name="stor")),
     "no volume named 'stor'"),
    ("a Job that restarts always", _in_yaml(
        "farm/build-amd64.yaml", lambda o: _pod(o).update(restartPolicy="Always")),
     "needs Never or OnFailure"),
    ("an undefined $(VAR)", _in_yaml(
        "farm/assemble.yaml", lambda o: _pod(o)["initContainers"][1]["env"].pop(0)),
     "$(AMD64_DIGEST) is no variable"),
    ("a kiln option that does not exist", _in_yaml(
        "farm/build-arm64.yaml", lambda o: _container(o)["args"].insert(1, "--metadatafile=x")),
     "has no option --metadatafile"),
    ("an unknown isolation", _in_yaml(
        "job-chroot.yaml", lambda o: _container(o)["args"].__setitem__(1, "--isolation=chrot")),
     "--isolation chrot"),
    ("a bad quantity", _in_yaml(
        "job-rootless.yaml",
        lambda o: _container(o)["resources"]["requests"].update(memory="4 GiB")),
     "quantity expected"),
    ("a kind this check does not know", _in_yaml(
        "job-rootless.yaml", lambda o: o.update(apiVersion="batch/v2")),
     "is not one this check knows"),
    ("a kiln option in a GitHub run step", _in_text(
        "examples/ci/github-actions.yml", "--metadata-file meta.json", "--metadata meta.json"),
     "has no option --metadata"),
    ("a GitLab job without a script", _in_text(
        "examples/ci/gitlab-ci.yml", "  script:", "  scripts:"),
     "no script"),
    ("a step with both run and uses", _in_text(
        "examples/ci/github-actions.yml", "      - name: Push the manifest list\n",
        "      - uses: actions/checkout@v4\n        name: Push the manifest list\n"),
     "either run or uses"),
    ("a kiln command that does not exist", _in_text(
        "docs/RUNNING-ANYWHERE.md", "kiln manifest create app-list",
        "kiln manifest make app-list"),
     "`kiln manifest make` is no kiln command"),
]


def self_test(root, kiln, scratch):
    """Returns the breaks that went unnoticed (or could not be made), as messages."""
    failures = []
    for what, apply, expected in BREAKS:
        copy_root = _copy_examples(root, scratch)
        try:
            apply(copy_root)
        except (KeyError, IndexError, TypeError, ValueError) as e:
            failures.append(f"self-test: cannot make {what}: the examples changed ({e!r})")
            continue
        found = check_all(copy_root, kiln, _notes())
        if not any(expected in p for p in found):
            failures.append(f"self-test: {what} went unnoticed (wanted {expected!r}; "
                            f"found {found})")
    shutil.rmtree(scratch / "root", ignore_errors=True)
    return failures


def _notes():
    return {"kiln command lines": 0, "kustomize renders": 0, "files": 0}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiln", required=True, help="the kiln binary")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[2]),
                        help="the repository (default: the one holding this script)")
    parser.add_argument("--scratch", help="a directory for the self-test's copies")
    parser.add_argument("--no-self-test", action="store_true")
    args = parser.parse_args()
    root = Path(args.root)
    kiln = Kiln(args.kiln)
    if kiln.options_of(["build"]) is None:
        print(f"FAIL: {args.kiln} build --help does not run", file=sys.stderr)
        return 1
    failures, breaks = [], 0
    if not args.no_self_test:
        with tempfile.TemporaryDirectory(dir=args.scratch) as scratch:
            failures, breaks = self_test(root, kiln, Path(scratch)), len(BREAKS)
    notes = _notes()
    problems = check_all(root, kiln, notes)
    for line in failures + problems:
        print(f"FAIL: {line}", file=sys.stderr)
    kustomize = (f"{notes['kustomize renders']} kustomization rendered by kubectl"
                 if shutil.which("kubectl") else "kubectl not installed: kustomize not rendered")
    print(f"examples: {notes['files']} files, {notes['kiln command lines']} kiln command lines, "
          f"{kustomize}; self-test: {breaks - len(failures)} of {breaks} breaks found; "
          f"{len(problems)} problems")
    return 1 if failures or problems else 0


if __name__ == "__main__":
    sys.exit(main())
