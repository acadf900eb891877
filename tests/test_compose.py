"""docker-compose.yml, checked: valid against the Compose Specification's schema (vendored in
deploy/compose-spec/), the production topology's rules (images, health checks, start order), and
its wiring against the settings and the Temporal contract. No Docker engine runs here, so the file
is parsed, not started."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from app.dev import temporal_command
from kwanus import contract
from kwanus.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# safe_load resolves the anchors and merge keys (`<<: *app`), as Compose does, before any check.
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SCHEMA_DIR = ROOT / "deploy" / "compose-spec"
SCHEMA: dict[str, Any] = json.loads((SCHEMA_DIR / "compose-spec.json").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = ("api", "worker", "migrate")
# The shipped defaults, whatever this machine's KWANUS_* environment says.
DEFAULT: dict[str, Any] = {name: f.default for name, f in Settings.model_fields.items()}

# A dependency on a long-running service waits for it to be healthy; on a one-shot job, for it to
# have exited 0.
HEALTHY = "service_healthy"
COMPLETED = "service_completed_successfully"


def schema_errors(compose: dict[str, Any]) -> list[str]:
    """Where a parsed compose file breaks the Compose Specification's schema, one line an error."""
    # The vendored schema is draft-07 (deploy/compose-spec/README.md).
    errors = Draft7Validator(SCHEMA).iter_errors(compose)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in errors)


def topology_problems(compose: dict[str, Any]) -> list[str]:
    """What keeps a parsed compose file from being the production topology, one line a problem
    naming its service and what is missing; none: it is.

    Every service runs an image: one built here has `build: .` and an image name too. A one-shot
    job (`restart: "no"`: the schema step, the migration, the Temporal setup) is waited for by some
    service with service_completed_successfully; every other service is long-running, with a
    health check and a restart policy. Every dependency exists and names its condition
    (service_healthy on a long-running service, service_completed_successfully on a one-shot), and
    no service waits, even indirectly, on itself."""
    services: dict[str, dict[str, Any]] = compose.get("services") or {}
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    problems: list[str] = []
    waited_for: set[str] = set()
    graph: dict[str, list[str]] = {}
    for name, service in services.items():
        if not service.get("image"):
            problems.append(f"{name}: no image")
        if "build" in service and service["build"] != ".":
            problems.append(f"{name}: builds {service['build']!r}, not this repository (build: .)")
        health = service.get("healthcheck") or {}
        if "restart" not in service:
            problems.append(f'{name}: no restart policy ("no" for a one-shot job)')
        elif name not in one_shots and (
            not health.get("test") or health.get("disable") or health["test"] == ["NONE"]
        ):
            problems.append(f"{name}: no healthcheck (a long-running service needs one)")
        deps = service.get("depends_on") or {}
        if isinstance(deps, list):
            problems.append(f"{name}: depends on {', '.join(deps)} with no condition")
            deps = dict.fromkeys(deps)
        graph[name] = list(deps)
        for dep, how in deps.items():
            if dep not in services:
                problems.append(f"{name}: depends on {dep}, which is no service")
                continue
            expected = COMPLETED if dep in one_shots else HEALTHY
            condition = (how or {}).get("condition")
            if condition == expected:
                waited_for.add(dep)
            elif how is not None:
                problems.append(f"{name}: waits for {dep} with {condition}, not {expected}")
    problems += [
        f"{name}: a one-shot job no service waits for with {COMPLETED}"
        for name in sorted(one_shots - waited_for)
    ]
    if cycle := dependency_cycle(graph):
        problems.append(f"dependency cycle: {' -> '.join(cycle)}")
    return problems


def dependency_cycle(graph: dict[str, list[str]]) -> list[str]:
    """A cycle in `depends_on` (first node repeated at the end), or [] if there is none."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done or node not in graph:
            return []
        for dep in graph[node]:
            if cycle := visit(dep, [*path, node]):
                return cycle
        done.add(node)
        return []

    for node in graph:
        if cycle := visit(node, []):
            return cycle
    return []


def test_vendored_schema_is_the_one_recorded() -> None:
    readme = (SCHEMA_DIR / "README.md").read_text()
    recorded = re.search(r"sha256 of `compose-spec.json` \| `([0-9a-f]{64})`", readme)
    assert recorded is not None
    digest = hashlib.sha256((SCHEMA_DIR / "compose-spec.json").read_bytes()).hexdigest()
    assert digest == recorded.group(1)
    Draft7Validator.check_schema(SCHEMA)
    assert (SCHEMA["title"], SCHEMA["$id"]) == ("Compose Specification", "compose_spec.json")


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    errors = "\n".join(schema_errors(COMPOSE))
    assert not errors, f"docker-compose.yml against the Compose Specification:\n{errors}"


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (
            lambda c: c["services"]["api"].update(healthchek={}),
            "services/api: 'healthchek' does not match any of the regexes: '^x-'",
        ),
        # What `restart: no` unquoted is in YAML 1.1: a boolean.
        (
            lambda c: c["services"]["migrate"].update(restart=False),
            "services/migrate/restart: False is not of type 'string'",
        ),
        (
            lambda c: c["services"]["temporal-ui"]["depends_on"]["temporal"].pop("condition"),
            "services/temporal-ui/depends_on: {'temporal': {}} is not valid under any of the "
            "given schemas",
        ),
    ],
    ids=["unknown-key", "restart-boolean", "dependency-without-condition"],
)
def test_schema_rejects_a_malformed_file(change: Any, error: str) -> None:
    compose = copy.deepcopy(COMPOSE)
    change(compose)
    assert schema_errors(compose) == [error]


def test_compose_file_is_the_production_topology() -> None:
    problems = "\n".join(topology_problems(COMPOSE))
    assert not problems, f"docker-compose.yml is not the production topology:\n{problems}"


LONG_RUNNING = sorted(name for name, s in SERVICES.items() if s["restart"] != "no")


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_the_check_fails_when_a_health_check_is_removed(name: str) -> None:
    compose = copy.deepcopy(COMPOSE)
    del compose["services"][name]["healthcheck"]
    assert topology_problems(compose) == [
        f"{name}: no healthcheck (a long-running service needs one)"
    ]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_the_check_fails_when_an_image_is_removed(name: str) -> None:
    compose = copy.deepcopy(COMPOSE)
    del compose["services"][name]["image"]
    assert topology_problems(compose) == [f"{name}: no image"]


def test_the_check_fails_on_a_dependency_out_of_order() -> None:
    compose = copy.deepcopy(COMPOSE)
    services = compose["services"]
    services["api"]["depends_on"] = {
        "postgresql": {"condition": "service_started"},
        "migrate": {"condition": HEALTHY},
        "redis": {"condition": HEALTHY},
    }
    services["temporal-ui"]["depends_on"] = ["temporal"]
    services["temporal"]["depends_on"]["temporal-setup"] = {"condition": COMPLETED}
    assert topology_problems(compose) == [
        "temporal-ui: depends on temporal with no condition",
        f"api: waits for postgresql with service_started, not {HEALTHY}",
        f"api: waits for migrate with {HEALTHY}, not {COMPLETED}",
        "api: depends on redis, which is no service",
        "dependency cycle: temporal -> temporal-setup -> temporal",
    ]


def test_the_check_fails_on_a_one_shot_nothing_waits_for() -> None:
    compose = copy.deepcopy(COMPOSE)
    for name in ("api", "worker"):
        compose["services"][name]["depends_on"] = {
            dep: how
            for dep, how in compose["services"][name]["depends_on"].items()
            if dep != "migrate"
        }
    assert topology_problems(compose) == [
        f"migrate: a one-shot job no service waits for with {COMPLETED}"
    ]


def test_services_of_the_distributed_topology() -> None:
    assert {
        "postgresql",
        "temporal-schema",
        "temporal",
        "temporal-ui",
        "temporal-setup",
        "migrate",
        "api",
        "worker",
    } <= set(SERVICES)
    for name in APP_SERVICES:
        assert SERVICES[name]["build"] == "."
    assert (ROOT / "Dockerfile").is_file()


def test_app_env_names_are_settings_and_point_at_the_services() -> None:
    fields = {f"KWANUS_{name.upper()}" for name in Settings.model_fields}
    for name in APP_SERVICES:
        env = SERVICES[name]["environment"]
        assert set(env) <= fields, set(env) - fields
        assert env["KWANUS_TEMPORAL_ADDRESS"] == "temporal:7233"
        assert env["KWANUS_TASK_QUEUE"] == DEFAULT["task_queue"]
        assert env["KWANUS_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert "@postgresql:5432/" in env["KWANUS_DATABASE_URL"]
        assert env["KWANUS_TEMPORAL_NAMESPACE"] == DEFAULT["temporal_namespace"]


def test_ports_match_the_settings() -> None:
    api = SERVICES["api"]
    port = api["environment"]["KWANUS_API_PORT"]
    assert int(port) == DEFAULT["api_port"]
    assert f"{DEFAULT['api_port']}:{port}" in api["ports"]
    # Only the API faces the world; what authenticates nobody is on the host's loopback.
    assert f"127.0.0.1:{DEFAULT['ui_port']}:8080" in SERVICES["temporal-ui"]["ports"]
    assert f"127.0.0.1:{DEFAULT['temporal_port']}:7233" in SERVICES["temporal"]["ports"]
    assert SERVICES["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]


def test_start_order_waits_on_health_and_set_up() -> None:
    for name in ("api", "worker"):
        deps = SERVICES[name]["depends_on"]
        assert deps["postgresql"]["condition"] == "service_healthy"
        assert deps["temporal"]["condition"] == "service_healthy"
        assert deps["temporal-setup"]["condition"] == "service_completed_successfully"
        assert deps["migrate"]["condition"] == "service_completed_successfully"
    for name in ("postgresql", "temporal", "api"):
        assert "healthcheck" in SERVICES[name], name
    assert SERVICES["temporal"]["environment"]["POSTGRES_SEEDS"] == "postgresql"


def test_setup_registers_exactly_our_search_attributes() -> None:
    script = " ".join(SERVICES["temporal-setup"]["command"])
    registered = dict(re.findall(r"(Kwanus\w+)=(\w+)", script))
    kinds = {"KEYWORD": "Keyword", "DATETIME": "Datetime"}
    expected = {k.name: kinds[k.indexed_value_type.name] for k in contract.SEARCH_ATTRIBUTES}
    assert registered == expected


def test_temporal_is_the_server_image_with_its_schema_step_at_one_version() -> None:
    images = {name: SERVICES[name]["image"] for name in SERVICES}
    assert not [name for name, image in images.items() if "auto-setup" in image]
    server, version = images["temporal"].split(":")
    assert server == "temporalio/server"
    for name in ("temporal-schema", "temporal-setup"):
        assert images[name] == f"temporalio/admin-tools:{version}", name
    deps = SERVICES["temporal"]["depends_on"]
    assert deps["temporal-schema"]["condition"] == "service_completed_successfully"
    assert SERVICES["temporal-setup"]["depends_on"]["temporal"]["condition"] == "service_healthy"


def test_schema_step_sets_up_the_databases_the_server_uses() -> None:
    server = SERVICES["temporal"]["environment"]
    assert server["DB"] == "postgres12"
    step = SERVICES["temporal-schema"]
    script = step["command"][0]
    tool = re.search(r'sql="(temporal-sql-tool [^"]+)"', script)
    assert tool is not None
    assert tool.group(1).split() == [
        "temporal-sql-tool",
        "--plugin",
        server["DB"],
        "--ep",
        server["POSTGRES_SEEDS"],
        "-p",
        server["DB_PORT"],
        "-u",
        server["POSTGRES_USER"],
    ]
    assert step["environment"]["SQL_PASSWORD"] == server["POSTGRES_PWD"]
    schema = re.search(r"^schema=(\S+)$", script, re.MULTILINE)
    assert schema is not None
    script = script.replace("$$schema", schema.group(1)).replace('"', "")
    steps = re.findall(r"--db (\w+) (create|setup-schema -v 0\.0|update-schema -d (\S+))", script)
    schema_dir = "/etc/temporal/schema/postgresql/v12/{}/versioned"
    assert steps == [
        (db, action, directory)
        for db, kind in (
            (server["DBNAME"], "temporal"),
            (server["VISIBILITY_DBNAME"], "visibility"),
        )
        for action, directory in (
            ("create", ""),
            ("setup-schema -v 0.0", ""),
            (f"update-schema -d {schema_dir.format(kind)}", schema_dir.format(kind)),
        )
    ]


def test_setup_creates_our_namespace() -> None:
    setup = SERVICES["temporal-setup"]
    assert setup["environment"]["TEMPORAL_NAMESPACE"] == DEFAULT["temporal_namespace"]
    assert setup["environment"]["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert "temporal operator namespace create" in setup["command"][0]


def test_server_dynamic_config_is_the_dev_servers() -> None:
    temporal = SERVICES["temporal"]
    [volume] = temporal["volumes"]
    source, target, mode = volume.split(":")
    assert (target, mode) == (temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"], "ro")
    config = yaml.safe_load((ROOT / source).read_text())
    args = temporal_command(Settings(), Path("temporal"))
    dev = dict(
        value.split("=", 1) for flag, value in pairwise(args) if flag == "--dynamic-config-value"
    )
    assert dev
    assert {
        key: [{"value": yaml.safe_load(v), "constraints": {}}] for key, v in dev.items()
    } == config


# The services Prometheus scrapes, and the setting each one's metrics port is.
METRICS_PORT = {"api": "api_metrics_port", "worker": "worker_metrics_port"}


def scrape_targets(config: dict[str, Any]) -> set[tuple[str, int, str]]:
    """(host, port, path) of every target of a Prometheus configuration: static targets, and the
    names its DNS service discovery (A records, one a container) resolves."""
    targets: set[tuple[str, int, str]] = set()
    for job in config["scrape_configs"]:
        assert set(job) <= {"job_name", "metrics_path", "static_configs", "dns_sd_configs"}, job
        path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                targets.add((host, int(port), path))
        for dns in job.get("dns_sd_configs", []):
            assert dns["type"] == "A", dns
            targets |= {(name, dns["port"], path) for name in dns["names"]}
    return targets


def test_prometheus_scrapes_the_api_and_every_worker_on_their_metrics_ports() -> None:
    prometheus = SERVICES["prometheus"]
    # The image's default configuration file, so no command line is needed.
    [source] = [
        v.split(":")[0]
        for v in prometheus["volumes"]
        if v.endswith(":/etc/prometheus/prometheus.yml:ro")
    ]
    config = yaml.safe_load((ROOT / source).read_text())
    assert scrape_targets(config) == {
        (name, DEFAULT[field], "/metrics") for name, field in METRICS_PORT.items()
    }
    for name, field in METRICS_PORT.items():
        env = SERVICES[name]["environment"]
        assert env[f"KWANUS_{field.upper()}"] == str(DEFAULT[field]), name
        # A container's every interface: the point, so that prometheus reaches it.
        assert env["KWANUS_METRICS_HOST"] == "0.0.0.0", name  # noqa: S104
    # Two replicas are both scraped: the worker job discovers them, it does not list one address.
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    probe = " ".join(SERVICES["worker"]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{DEFAULT['worker_metrics_port']}/metrics" in probe


def test_app_logs_json_and_traces_nowhere_by_default() -> None:
    for name in APP_SERVICES:
        env = SERVICES[name]["environment"]
        assert env["KWANUS_LOG_FORMAT"] == "json", name
        assert env["KWANUS_OTLP_ENDPOINT"] == "", name
