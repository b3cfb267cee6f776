"""docker-compose.yml, Dockerfile and deploy/turnout.toml agree with the code.

No Docker engine is needed: the compose file is read with PyYAML, its ``${VAR:-default}``
values are interpolated the way Compose does it (with an empty environment, so the
defaults), every container command is parsed by Turnout's own click CLI, every
``TURNOUT_*`` variable is resolved against ``Settings``, and each service's environment
plus the mounted config file is loaded with ``load_settings``.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import tomllib
import types
import typing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel

from turnout.cli import cli
from turnout.schemas.settings import CONFIG_ENV, ENV_PREFIX, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY_CONFIG = ROOT / "deploy" / "turnout.toml"

INFRA_SERVICES = {"kafka", "clickhouse", "grafana"}  # third-party images, not the turnout command
# TURNOUT_* variables that are read outside Settings, with where they are read.
NON_SETTINGS_VARS = {CONFIG_ENV, "TURNOUT_LOG_LEVEL"}


# -- reading the compose file ------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\})")


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's variable substitution: ``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?e}``, ``$$``."""
    env = env or {}

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        present = name in env
        set_nonempty = present and env[name] != ""
        if op == ":-":
            return env[name] if set_nonempty else arg
        if op == "-":
            return env[name] if present else arg
        if op in (":?", "?"):
            if not (set_nonempty if op == ":?" else present):
                raise ValueError(f"${{{name}}} is required: {arg}")
            return env[name]
        if op in (":+", "+"):
            return arg if (set_nonempty if op == ":+" else present) else ""
        return env.get(name, "")

    return _INTERPOLATION.sub(sub, value)


def load_compose() -> dict[str, Any]:
    with COMPOSE_FILE.open() as handle:
        return yaml.safe_load(handle)  # SafeLoader resolves the file's `<<: *anchor` merge keys


COMPOSE = load_compose()
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
APP_SERVICES = sorted(name for name in SERVICES if name not in INFRA_SERVICES)


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment (mapping or ``K=V`` list form), interpolated."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: interpolate(str(value)) for key, value in raw.items()}


def as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def image_entrypoint() -> list[str]:
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            return json.loads(line.removeprefix("ENTRYPOINT"))
    raise AssertionError("Dockerfile has no ENTRYPOINT")


def turnout_invocations(service: dict[str, Any]) -> list[list[str]]:
    """The ``turnout`` argument lists a container runs, in order.

    With the image's own entrypoint the command is the argument list; a shell
    entrypoint (``sh -c "turnout a && turnout b"``) runs each ``turnout …`` in turn.
    """
    entrypoint = as_list(service.get("entrypoint")) or image_entrypoint()
    command = as_list(service.get("command"))
    if entrypoint == ["turnout"]:
        return [command]
    assert entrypoint[-1] == "-c" and Path(entrypoint[0]).name in {"sh", "bash"}, f"unexpected entrypoint {entrypoint}"
    assert len(command) == 1, f"a shell entrypoint takes one script, got {command}"
    invocations = []
    for part in re.split(r"&&|;|\n", command[0]):
        words = shlex.split(part)
        if not words:
            continue
        assert words[0] == "turnout", f"{part.strip()!r} does not run turnout"
        invocations.append(words[1:])
    return invocations


def resolve_command(args: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """Walk ``cli``'s groups: the leaf command, its path and the arguments it gets."""
    command: click.Command = cli
    path: list[str] = []
    rest = list(args)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        path.append(rest[0])
        command = command.commands[rest.pop(0)]
    return command, path, rest


def option_value(args: list[str], option: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None


def fleet_ids() -> set[str]:
    with DEPLOY_CONFIG.open("rb") as handle:
        return set(tomllib.load(handle)["fleet"])


def worker_models(services: dict[str, dict[str, Any]]) -> dict[str, str]:
    """service name -> the ``--model`` its ``turnout worker`` serves."""
    found = {}
    for name, service in services.items():
        if name in INFRA_SERVICES:
            continue
        for args in turnout_invocations(service):
            if args[:1] == ["worker"]:
                found[name] = option_value(args, "--model")
    return found


def worker_problems(services: dict[str, dict[str, Any]], fleet: set[str]) -> list[str]:
    models = worker_models(services)
    problems = [f"{name}: --model {model!r} is not a fleet id ({sorted(fleet)})" for name, model in models.items() if model not in fleet]
    served = list(models.values())
    problems += [f"no worker service for fleet model {m!r}" for m in sorted(fleet - set(served))]
    problems += [f"fleet model {m!r} has {served.count(m)} worker services" for m in sorted(set(served)) if served.count(m) > 1]
    return problems


# -- TURNOUT_* names against Settings ------------------------------------------------------


def settings_field_path(name: str) -> tuple[str, ...]:
    """The Settings field a ``TURNOUT_<A>__<B>…`` variable sets; ``KeyError`` if none.

    Mirrors pydantic-settings (prefix, ``__`` nesting, case-insensitive): each part names
    a field of the current model, or the key of a ``dict[str, Model]`` field.
    """
    if not name.upper().startswith(ENV_PREFIX):
        raise KeyError(f"{name} lacks the {ENV_PREFIX} prefix")
    parts = name[len(ENV_PREFIX) :].lower().split("__")
    annotation: Any = Settings
    path: list[str] = []
    i = 0
    while i < len(parts):
        model = _model_of(annotation)
        if model is None:
            raise KeyError(f"{name}: {'.'.join(path)} is a value, it has no field {parts[i]!r}")
        fields = {key.lower(): info for key, info in model.model_fields.items()}
        if parts[i] not in fields:
            raise KeyError(f"{name}: {model.__name__} has no field {parts[i]!r} (fields: {', '.join(sorted(fields))})")
        path.append(parts[i])
        annotation = fields[parts[i]].annotation
        i += 1
        mapping_values = _dict_values_of(annotation)
        if mapping_values is not None and i < len(parts):
            path.append(parts[i])  # a key of the mapping, e.g. the model id in fleet.<id>
            annotation = mapping_values
            i += 1
    if not path:
        raise KeyError(f"{name} names no field")
    return tuple(path)


def _strip_optional(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return annotation


def _model_of(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip_optional(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _dict_values_of(annotation: Any) -> Any | None:
    annotation = _strip_optional(annotation)
    if typing.get_origin(annotation) is dict:
        return typing.get_args(annotation)[1]
    return None


# -- the tests -------------------------------------------------------------------------


def test_kafka_runs_apache_kafka_4_in_kraft_mode() -> None:
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{node_id}@kafka:" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    assert controller in listeners
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners <= set(protocol_map)
    assert "kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID must be a base64url UUID"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1", "a single broker cannot hold more replicas"
    assert not any("zookeeper" in key.lower() for key in env)
    assert "healthcheck" in kafka


def test_clickhouse_server_with_the_password_the_dsn_uses() -> None:
    clickhouse = SERVICES["clickhouse"]
    assert clickhouse["image"].startswith("clickhouse/clickhouse-server:")
    assert "healthcheck" in clickhouse
    env = environment(clickhouse)
    for name in APP_SERVICES:
        dsn = environment(SERVICES[name]).get("TURNOUT_CLICKHOUSE__DSN")
        if dsn is None:
            continue
        parts = urlsplit(dsn)
        assert (parts.scheme, parts.hostname, parts.port) == ("http", "clickhouse", 8123), name
        assert (parts.username, parts.password) == (env["CLICKHOUSE_USER"], env["CLICKHOUSE_PASSWORD"]), name


def test_every_role_has_a_service() -> None:
    commands = {name: [resolve_command(args)[1] for args in turnout_invocations(SERVICES[name])] for name in APP_SERVICES}
    assert commands["init"] == [["topics", "create"], ["migrate"]]
    assert commands["router"] == [["router"]]
    assert commands["sink"] == [["sink"]]
    assert commands["simulator"] == [["simulator"]]
    assert SERVICES["init"].get("restart", "no") == "no", "init is one-shot"


def test_one_worker_service_per_fleet_model() -> None:
    assert worker_problems(SERVICES, fleet_ids()) == []
    assert set(worker_models(SERVICES).values()) == fleet_ids()


def test_worker_check_rejects_an_unknown_model_and_a_missing_one() -> None:
    services = {name: service for name, service in SERVICES.items() if name != "worker-small"}
    services["worker-huge"] = {**SERVICES["worker-medium"], "command": ["worker", "--model", "huge"]}
    problems = worker_problems(services, fleet_ids())
    assert any("'huge' is not a fleet id" in p for p in problems)
    assert any("no worker service for fleet model 'small'" in p for p in problems)


def test_app_services_run_the_turnout_image_with_the_mounted_config() -> None:
    assert image_entrypoint() == ["turnout"]
    for name in APP_SERVICES:
        service = SERVICES[name]
        assert service.get("build") in (".", {"context": "."}), f"{name} is not built from this repository"
        env = environment(service)
        mounts = {}
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            mounts[target] = (source, mode)
        assert env[CONFIG_ENV] in mounts, f"{name}: ${CONFIG_ENV}={env[CONFIG_ENV]} is not a mounted path ({sorted(mounts)})"
        source, mode = mounts[env[CONFIG_ENV]]
        assert (COMPOSE_FILE.parent / source).resolve() == DEPLOY_CONFIG, name
        assert mode == ["ro"], f"{name}: mount the config read-only"


ALL_INVOCATIONS = [(name, args) for name in APP_SERVICES for args in turnout_invocations(SERVICES[name])]


@pytest.mark.parametrize(("service", "args"), ALL_INVOCATIONS, ids=[f"{s}:{' '.join(a)}" for s, a in ALL_INVOCATIONS])
def test_service_command_is_a_real_turnout_command(service: str, args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0, f"{service}: `turnout {' '.join(args)} --help` failed:\n{result.output}"
    command, path, rest = resolve_command(args)
    assert path and runs_itself(command), f"{service}: `turnout {' '.join(args)}` is not a leaf command, nor a group that runs without one"
    ctx = command.make_context(" ".join(path), rest)  # the options parse and convert (e.g. --port is an int)
    leftover = [*getattr(ctx, "_protected_args", []), *ctx.args]
    assert not isinstance(command, click.Group) or not leftover, f"{service}: {leftover} would be taken for a subcommand of `turnout {' '.join(path)}`"
    model = option_value(args, "--model")
    if model is not None:
        assert model in fleet_ids()


def runs_itself(command: click.Command) -> bool:
    """A leaf command, or a group that does its own work when no subcommand is given
    (``turnout gateway`` serves; ``turnout gateway key create`` makes a key)."""
    return not isinstance(command, click.Group) or command.invoke_without_command


def test_a_group_counts_as_a_service_command_only_when_it_runs_without_a_subcommand() -> None:
    assert runs_itself(resolve_command(["gateway", "--port", "8000"])[0])
    assert not runs_itself(resolve_command(["topics"])[0])
    assert not runs_itself(resolve_command(["gateway", "key"])[0])


def test_non_settings_variables_are_read_by_the_code() -> None:
    assert CONFIG_ENV == "TURNOUT_CONFIG"
    (log_level,) = [param for param in cli.params if param.name == "log_level"]
    assert log_level.envvar == "TURNOUT_LOG_LEVEL"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_turnout_variables_name_settings_fields(service: str) -> None:
    for name in environment(SERVICES[service]):
        if name.upper().startswith(ENV_PREFIX) and name not in NON_SETTINGS_VARS:
            settings_field_path(name)


def test_field_path_resolution() -> None:
    assert settings_field_path("TURNOUT_KAFKA__BOOTSTRAP_SERVERS") == ("kafka", "bootstrap_servers")
    assert settings_field_path("turnout_clickhouse__dsn") == ("clickhouse", "dsn")
    assert settings_field_path("TURNOUT_SIMULATOR__DEFAULT__LATENCY_MS") == ("simulator", "default", "latency_ms")
    assert settings_field_path("TURNOUT_FLEET__SMALL__BASE_URL") == ("fleet", "small", "base_url")
    assert settings_field_path("TURNOUT_SIMULATOR__PROFILES__SIM-LARGE__ERROR_RATE") == ("simulator", "profiles", "sim-large", "error_rate")


@pytest.mark.parametrize(
    "invented",
    [
        "TURNOUT_KAFKA__BOOTSTRAP_SERVER",  # typo in the key
        "TURNOUT_KAFKA_BOOTSTRAP_SERVERS",  # one underscore: pydantic-settings silently ignores it
        "TURNOUT_CLICKHOUSE__URL",
        "TURNOUT_SCHEMA_REGISTRY_URL",
        "TURNOUT_KAFKA__BOOTSTRAP_SERVERS__HOST",  # below a plain value
        "KAFKA_BOOTSTRAP_SERVERS",  # no prefix
    ],
)
def test_invented_variable_names_fail_the_check(invented: str) -> None:
    with pytest.raises(KeyError):
        settings_field_path(invented)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_service_environment_and_mounted_config_load(service: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    env = environment(SERVICES[service])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The container reads $TURNOUT_CONFIG; here the same file is at the mount's source.
    settings = load_settings(DEPLOY_CONFIG)
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    dsn = urlsplit(settings.clickhouse.dsn.get_secret_value())
    assert (dsn.scheme, dsn.hostname, dsn.port) == ("http", "clickhouse", 8123)
    simulator = urlsplit(settings.simulator_url())
    assert simulator.hostname == "simulator" and simulator.hostname in SERVICES
    simulator_args = turnout_invocations(SERVICES["simulator"])[0]
    listen_port = int(option_value(simulator_args, "--port") or settings.simulator.port)
    assert simulator.port == listen_port, "workers must call the port the simulator listens on"
    for model_id in settings.fleet:
        if settings.fleet[model_id].provider == "simulated":
            assert settings.backend_url(model_id) == settings.simulator_url()
    if service == "simulator":
        assert settings.simulator.host == "0.0.0.0", "the simulator must listen beyond its container's loopback"


def test_health_conditions_have_healthchecks() -> None:
    for name, service in SERVICES.items():
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            continue
        for dependency, spec in depends.items():
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_healthy":
                assert "healthcheck" in SERVICES[dependency], f"{name} waits for {dependency} to be healthy, which has no healthcheck"
            if condition == "service_completed_successfully":
                assert SERVICES[dependency].get("restart", "no") == "no", f"{dependency} is awaited to complete but restarts"
    for name in APP_SERVICES:
        if name not in {"init", "simulator"}:
            assert SERVICES[name]["depends_on"]["init"]["condition"] == "service_completed_successfully", name
    init = SERVICES["init"]["depends_on"]
    assert init["kafka"]["condition"] == init["clickhouse"]["condition"] == "service_healthy"


def test_dockerfile_builds_every_package_directory() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    with (ROOT / "pyproject.toml").open("rb") as handle:
        package_dirs = set(tomllib.load(handle)["tool"]["setuptools"]["package-dir"].values())
    copied = {m.rstrip("/") for m in re.findall(r"^COPY (\S+)", text, re.M)}
    assert package_dirs <= copied, f"Dockerfile does not copy {sorted(package_dirs - copied)}"
    assert "pyproject.toml" in copied


def test_interpolation() -> None:
    assert interpolate("http://default:${CLICKHOUSE_PASSWORD:-turnout}@clickhouse:8123") == "http://default:turnout@clickhouse:8123"
    assert interpolate("${A:-x}", {"A": "y"}) == "y"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("$${A}") == "${A}"
    with pytest.raises(ValueError):
        interpolate("${KEY:?set KEY}")


def test_grafana_is_provisioned_from_the_generated_files_with_the_clickhouse_plugin() -> None:
    grafana = SERVICES["grafana"]
    assert "grafana-clickhouse-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"] if volume.startswith("./")}
    assert mounts == {"/etc/grafana/provisioning": "./deploy/grafana/provisioning", "/var/lib/grafana/dashboards": "./deploy/grafana/dashboards"}
    for source in mounts.values():
        assert (ROOT / source).is_dir(), f"{source} is missing: run `turnout grafana export -c deploy/turnout.toml`"
    # the data source reads the password from Grafana's environment: the same one ClickHouse gets
    assert grafana["environment"]["CLICKHOUSE_PASSWORD"] == SERVICES["clickhouse"]["environment"]["CLICKHOUSE_PASSWORD"]
