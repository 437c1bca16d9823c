"""The docs hold: every test they cite exists, so a rename cannot orphan a row; the
configuration reference has every key and variable of the settings schema; the Kubernetes
manifests parse and fit together, and every variable the deployment docs name is one
prunehook reads."""

from __future__ import annotations

import ast
import importlib.util
import re
from types import ModuleType
from typing import Any

import pytest

from tests.harness import REPO
from tests.readme import (
    DEPLOYMENT_SECTIONS,
    KUBERNETES,
    PRODUCTION,
    VARIABLE,
    assignments,
    container,
    fenced_blocks,
    manifest,
    manifests,
    section,
    variables_read,
)

CITED = re.compile(r"tests/(test_\w+)\.py::(test_\w+)")


@pytest.mark.parametrize("document", ["docs/RELIABILITY.md"])
def test_every_test_a_document_cites_exists(document):
    cited = set(CITED.findall((REPO / document).read_text()))
    assert cited
    missing = [
        f"{module}::{name}"
        for module, name in sorted(cited)
        if f"def {name}(" not in (REPO / "tests" / f"{module}.py").read_text()
    ]
    assert missing == []


def test_every_file_the_readme_links_exists():
    """The README is read on its own (mkdocs checks the site's links, not the README's)."""
    linked = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", (REPO / "README.md").read_text())
    assert linked
    assert [path for path in linked if not (REPO / path).is_file()] == []


# -- the configuration reference, generated from the settings schema -----------------------


def config_reference() -> ModuleType:
    """docs/hooks/config_reference.py, the mkdocs hook that writes the reference."""
    path = REPO / "docs" / "hooks" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_rows() -> dict[str, list[str]]:
    """The generated tables' rows by their first cell, each row's cells unquoted."""
    rows = {}
    for line in config_reference().reference().splitlines():
        if line.startswith("| `"):
            cells = [cell.strip().strip("`") for cell in line.strip("|").split(" | ")]
            rows[cells[0]] = cells
    return rows


def test_the_configuration_reference_has_every_per_target_key_with_its_variable():
    from webhook.config import PREFIX, VARIABLES
    from webhook.core.targets import PolicySchema, TargetSchema

    rows = reference_rows()
    # the variable config.py reads for each per-target key
    variable_of = {
        each.name: PREFIX + name.upper()
        for name, each in VARIABLES.items()
        if isinstance(each.parent, PolicySchema)
    }
    for name, each in PolicySchema().fields.items():
        key = each.data_key or name
        assert key in rows, key
        assert rows[key][1] == variable_of[name], key
        assert rows[key][-1] == each.metadata["description"], key
    for name in set(TargetSchema().fields) - set(PolicySchema().fields):
        assert rows[name][1] == "(targets file only)", name


def test_the_configuration_reference_has_every_variable_and_its_description():
    from webhook.config import PREFIX, Variables

    rows = reference_rows()
    for name, each in Variables().fields.items():
        variable = PREFIX + name.upper()
        assert variable in rows, variable
        assert rows[variable][-1] == each.metadata["description"], variable
        assert rows[variable][2] not in ("", None), variable  # a default, even (empty)


def test_the_configuration_page_names_every_variable_prunehook_reads():
    referenced = {cell for cells in reference_rows().values() for cell in cells[:2]}
    page = (REPO / "docs" / "configuration.md").read_text()
    guard = (REPO / "contrib" / "prunehook-guard").read_text()
    # the build host's guard's own, told in its header; a request header as WSGI passes it
    elsewhere = set(re.findall(r"\$\{?(PRUNEHOOK_[A-Z0-9_]+)", guard)) | {"HTTP_AUTHORIZATION"}
    unnamed = [
        name
        for name in sorted(variables_read() - elsewhere)
        if name not in referenced and f"`{name}`" not in page
    ]
    assert unnamed == []


def test_the_configuration_page_says_which_variables_dot_env_never_sets():
    beside = section("docs/configuration.md", "Beside the schema")
    assert "read from the process environment only, never from `.env`" in beside
    process_only = [
        "DATABASE_URL",
        "PRUNEHOOK_INSTANCE_PATH",
        "PRUNEHOOK_COPY_TO_URL",
        "PORT",
        "GUNICORN_BIND",
        "WEB_CONCURRENCY",
        "GUNICORN_THREADS",
        "GUNICORN_CONTROL_SOCKET",
    ]
    assert [name for name in process_only if f"`{name}`" not in beside] == []


def test_the_configuration_page_keeps_the_marker_the_reference_replaces():
    page = (REPO / "docs" / "configuration.md").read_text()
    assert page.count(config_reference().MARKER) == 1


def test_the_status_page_says_what_every_error_kind_means():
    from webhook.core.outcome import ErrorKind

    listed = re.findall(r"^- `([a-z_]+)`: ", section("docs/status.md", "What failed"), re.M)
    assert sorted(listed) == sorted(kind.value for kind in ErrorKind)


# -- the deployment docs: the Kubernetes manifests and the variables they name ---------------


def test_the_kubernetes_manifests_parse_as_yaml_each_a_named_object():
    found = manifests()
    assert sorted(found) == [
        "configmap.example.yaml",
        "deployment.yaml",
        "secret.example.yaml",
        "service.yaml",
    ]
    for name, docs in found.items():
        assert docs, name
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), name
            assert doc["metadata"]["name"], name


def test_the_deployment_runs_two_replicas_non_root_with_probes_on_paths_prunehook_serves(app):
    deployment = manifest("Deployment", "prunehook")
    pod = deployment["spec"]["template"]["spec"]
    (port,) = container()["ports"]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )
    served = {rule.rule for rule in app.url_map.iter_rules()}
    probes = {kind: container()[kind]["httpGet"] for kind in ("readinessProbe", "livenessProbe")}
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "readinessProbe": "/readyz",
        "livenessProbe": "/healthz",
    }
    assert {probe["path"] for probe in probes.values()} <= served
    assert {probe["port"] for probe in probes.values()} == {port["name"]}
    assert f"0.0.0.0:{port['containerPort']}" in container()["command"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False
    assert container()["resources"]["requests"] and container()["resources"]["limits"]
    service = manifest("Service", "prunehook")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {port["name"]}


def test_the_deployment_finds_every_key_it_takes_in_the_example_secret_and_configmaps():
    pod = manifest("Deployment", "prunehook")["spec"]["template"]["spec"]
    secret_keys = set(manifest("Secret", "prunehook")["stringData"])
    taken = [entry["valueFrom"]["secretKeyRef"] for entry in container()["env"]]
    assert {ref["name"] for ref in taken} == {"prunehook"}
    assert {ref["key"] for ref in taken} == secret_keys
    for source in container()["envFrom"]:
        manifest("ConfigMap", source["configMapRef"]["name"])
    # the known_hosts variable names the file the ConfigMap volume puts in the container
    settings = manifest("ConfigMap", "prunehook-settings")["data"]
    mounts = {mount["name"]: mount["mountPath"] for mount in container()["volumeMounts"]}
    (volume,) = [volume for volume in pod["volumes"] if "configMap" in volume]
    files = manifest("ConfigMap", volume["configMap"]["name"])["data"]
    assert settings["PRUNEHOOK_SSH_KNOWN_HOSTS"] in {
        f"{mounts[volume['name']]}/{file}" for file in files
    }
    # the read-only root: gunicorn.conf.py makes its metrics folder under /tmp
    if container()["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts.values()


def gunicorn_constant(name: str) -> Any:
    """A constant of webhook/gunicorn_settings.py, read from its text: gunicorn runs it as a
    file, and importing it would run the master's checks."""
    tree = ast.parse((REPO / "webhook" / "gunicorn_settings.py").read_text())
    (value,) = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(target, ast.Name) and target.id == name for target in node.targets)
    ]
    return value


def graceful_timeout_s(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> int:
    """gunicorn's graceful_timeout with `variables` set, as webhook/gunicorn_settings.py
    computes it: the longest run of any target, then the margin of a worker's exit."""
    from webhook.config import load_settings
    from webhook.runs import run_limit_s

    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings, _ = load_settings()
    assert settings.targets.fleet
    longest = max(run_limit_s(target) for target in settings.targets.fleet)
    return int(longest) + gunicorn_constant("EXIT_MARGIN_S")


def test_the_deployment_waits_out_gunicorns_graceful_stop_with_the_configmaps_settings(
    monkeypatch,
):
    settings = manifest("ConfigMap", "prunehook-settings")["data"]
    bound = graceful_timeout_s(monkeypatch, settings)
    pod = manifest("Deployment", "prunehook")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= bound
    # the ConfigMap's rule for a timeout of its own
    timeout = int(settings["PRUNEHOOK_TIMEOUT_S"])
    said = (KUBERNETES / "configmap.example.yaml").read_text()
    assert f"2 x it + {bound - 2 * timeout} " in said


def test_nginx_waits_for_a_whole_run_as_long_as_gunicorns_graceful_stop(monkeypatch):
    conf = (REPO / "contrib" / "nginx" / "prunehook.conf").read_text()
    (read_timeout,) = re.findall(r"proxy_read_timeout (\d+)s;", conf)
    bound = graceful_timeout_s(
        monkeypatch, {"PRUNEHOOK_SSH_HOST": "build-1.example", "PRUNEHOOK_TIMEOUT_S": "120"}
    )
    assert int(read_timeout) >= bound
    assert f"({bound} s with PRUNEHOOK_TIMEOUT_S=120)" in conf
    assert f"({bound} s with `PRUNEHOOK_TIMEOUT_S=120`)" in (REPO / PRODUCTION).read_text()


SYSTEMD_UNIT = REPO / "contrib" / "systemd" / "prunehook.service"


def unit_settings() -> dict[str, str]:
    """The systemd unit's `Key=value` lines (an `Environment=` line as `Environment NAME`)."""
    found = {}
    for line in SYSTEMD_UNIT.read_text().splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith("#"):
            if key == "Environment":
                name, _, value = value.partition("=")
                key = f"Environment {name}"
            found.setdefault(key, value)
    return found


def one_line(text: str) -> str:
    return " ".join(text.replace("\n#", "\n").split())


def test_the_command_beside_the_systemd_unit_runs_with_the_units_user_settings_and_state():
    unit = unit_settings()
    blocks = fenced_blocks(section(PRODUCTION, "Commands beside the systemd unit"))
    (command,) = [one_line(block) for block in blocks if block.startswith("sudo")]
    program = unit["ExecStart"].split()[0]
    assert command.startswith(f"sudo -u {unit['User']} sh -c 'cd {unit['WorkingDirectory']} ")
    assert f" . {unit['EnvironmentFile']} " in command
    instance = unit["Environment PRUNEHOOK_INSTANCE_PATH"]
    assert f" PRUNEHOOK_INSTANCE_PATH={instance} exec {program} check'" in command
    # the same command in the fleet's steps and in the unit's own comments
    prefix = command.removesuffix(" check'")
    assert prefix in one_line((REPO / "docs" / "fleet.md").read_text())
    assert prefix in one_line(SYSTEMD_UNIT.read_text())


def test_the_documented_kubectl_command_creates_every_key_the_deployment_takes_from_the_secret():
    blocks = fenced_blocks(section(PRODUCTION, "Kubernetes"))
    (command,) = [block for block in blocks if "kubectl create secret generic prunehook" in block]
    created = set(re.findall(r"--from-(?:literal|file)=([a-z0-9-]+)=", command))
    taken = {entry["valueFrom"]["secretKeyRef"]["key"] for entry in container()["env"]}
    assert created == taken


def test_every_variable_the_deployment_docs_name_is_one_prunehook_reads():
    """A doc cannot name a variable that does not exist: the deployment sections of the docs,
    the variables the Deployment sets and the ConfigMap it takes them from."""
    read = variables_read()
    assert {"PRUNEHOOK_DATABASE_URL", "DATABASE_URL", "PRUNEHOOK_WAIT_FOR_RUN", "PORT"} <= read
    named = {
        f"{page}: {title}": set(VARIABLE.findall(section(page, title)))
        for page, title in DEPLOYMENT_SECTIONS
    }
    named["deployment.yaml"] = {entry["name"] for entry in container()["env"]}
    named["configmap.example.yaml"] = set(manifest("ConfigMap", "prunehook-settings")["data"])
    assert all(named.values())
    unknown = {where: sorted(names - read) for where, names in named.items() if names - read}
    assert unknown == {}


def test_the_paas_sections_variables_and_its_heroku_command_set_the_same_names():
    blocks = fenced_blocks(section(PRODUCTION, "Deploying on a PaaS"))
    (block,) = [b for b in blocks if b.startswith("PRUNEHOOK_")]
    listed = set(assignments(block))
    (heroku,) = [b for b in blocks if "heroku" in b]
    assert set(re.findall(r"\b(PRUNEHOOK_[A-Z_]+)=", heroku)) == listed
