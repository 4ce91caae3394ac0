"""ivr.config.load_config: defaults, strict keys and types, calendar checks, the repo's config.yaml."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ivr import config as config_mod
from ivr.config import Config, load_config
from ivr.errors import ConfigError

ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("IVR_CONFIG", raising=False)
    monkeypatch.delenv("IVR_VAR_DIR", raising=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return str(path)


def error(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return info.value


# --- defaults ---

def test_defaults_when_there_is_no_config_file(tmp_path, monkeypatch):
    monkeypatch.setattr(config_mod, "REPO_ROOT", tmp_path)
    config = load_config()
    assert config.source == ""
    assert config.root == str(tmp_path)
    assert config.profile == "development"
    assert config.flows.dir == "flows" and config.flows.reload is True
    assert config.router.backend == "e5" and config.router.min_score is None
    assert config.calendar.timezone == "Asia/Shanghai"
    assert config.calendar.business_hours["mon"] == "08:00-20:00"
    assert "sun" not in config.calendar.business_hours
    assert config.paths.dialplans == "dialplans"
    assert config.flags == {}


def test_empty_file_means_defaults(tmp_path):
    config = load_config(write(tmp_path, "# nothing here\n"))
    assert dataclasses.replace(config, source="", root="") == Config(source="", root="")
    assert config.source == str(tmp_path / "config.yaml")


def test_partial_section_keeps_the_other_defaults(tmp_path):
    config = load_config(write(tmp_path, "router:\n  backend: keywords\n"))
    assert config.router.backend == "keywords"
    assert config.router.threads == 2 and config.router.clarify_margin is None
    assert config.flows == config_mod.FlowsConfig()


def test_an_explicit_missing_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "nope.yaml"))
    assert info.value.code == "config-missing"
    assert "nope.yaml" in str(info.value)


def test_ivr_config_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("IVR_CONFIG", write(tmp_path, "profile: production\n"))
    assert load_config().profile == "production"


def test_an_explicit_path_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("IVR_CONFIG", str(tmp_path / "missing.yaml"))
    other = tmp_path / "other.yaml"
    other.write_text("profile: staging\n")
    assert load_config(str(other)).profile == "staging"


def test_paths_resolve_relative_to_the_config_folder(tmp_path, monkeypatch):
    config = load_config(write(tmp_path, "paths: {var_dir: state}\n"))
    assert config.root == str(tmp_path.resolve())
    assert config.resolve("flows") == tmp_path.resolve() / "flows"
    assert config.resolve("/abs/flows") == Path("/abs/flows")
    assert config.var_dir == tmp_path.resolve() / "state"
    monkeypatch.setenv("IVR_VAR_DIR", "/srv/ivr")
    assert config.var_dir == Path("/srv/ivr")


def test_values_are_coerced(tmp_path):
    config = load_config(write(tmp_path, "router: {min_score: 1, threads: 4}\n"
                                         "calendar: {extra_holidays: [2026-10-01], extra_workdays: []}\n"
                                         "flags: {hotline.closed: true}\n"))
    assert config.router.min_score == 1.0 and isinstance(config.router.min_score, float)
    assert config.router.threads == 4
    assert config.calendar.extra_holidays == ("2026-10-01",)
    assert config.flags == {"hotline.closed": True}


def test_config_is_frozen(tmp_path):
    config = load_config(write(tmp_path, "profile: x\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.profile = "y"  # type: ignore[misc]


# --- unknown keys name their full path ---

@pytest.mark.parametrize("text, key_path", [
    ("router:\n  bakend: e5\n", "router.bakend"),
    ("calendar:\n  timezone: UTC\n  holiday_country: CN\n", "calendar.holiday_country"),
    ("flow:\n  dir: flows\n", "flow"),
    ("paths: {var_dir: var, dialplan: dialplans}\n", "paths.dialplan"),
    ("source: /etc/x.yaml\n", "source"),  # internal fields are not settable
    ("root: /\n", "root"),
])
def test_unknown_key_names_the_key_path(tmp_path, text, key_path):
    exc = error(tmp_path, text)
    assert exc.code == "config-unknown-key"
    assert exc.message.startswith(f"{key_path}: unknown key"), exc.message


def test_unknown_key_lists_the_known_ones(tmp_path):
    exc = error(tmp_path, "router: {bakend: e5}\n")
    assert "backend" in exc.message and "min_score" in exc.message
    assert str(exc).startswith("config-unknown-key: router.bakend")


# --- wrong types ---

@pytest.mark.parametrize("text, where, expected, got", [
    ("router: {threads: two}\n", "router.threads", "int", "str"),
    ("router: {threads: 2.5}\n", "router.threads", "int", "float"),
    ("router: {threads: true}\n", "router.threads", "int", "bool"),
    ("router: {min_score: high}\n", "router.min_score", "float", "str"),
    ("router: {min_score: false}\n", "router.min_score", "float", "bool"),
    ("flows: {reload: 1}\n", "flows.reload", "bool", "int"),
    ("flows: {dir: 3}\n", "flows.dir", "str", "int"),
    ("profile: [a, b]\n", "profile", "str", "list"),
    ("flags: [a]\n", "flags", "dict", "list"),
    ("calendar: {extra_holidays: 2026-10-01}\n", "calendar.extra_holidays", "tuple", "str"),
])
def test_wrong_type(tmp_path, text, where, expected, got):
    exc = error(tmp_path, text)
    assert exc.code == "config-bad-type"
    assert exc.message == f"{where}: expected {expected}, got {got}"


@pytest.mark.parametrize("text, where", [
    ("router: e5\n", "router"),
    ("calendar: [mon]\n", "calendar"),
    ("- profile: x\n", "config"),
    ("just text\n", "config"),
])
def test_a_section_must_be_a_mapping(tmp_path, text, where):
    exc = error(tmp_path, text)
    assert exc.message.startswith(f"{where}: expected a mapping"), exc.message


def test_router_backend_value(tmp_path):
    exc = error(tmp_path, "router: {backend: bert}\n")
    assert (exc.code, exc.message) == ("config-bad-value", "router.backend: must be e5 or keywords")


# --- calendar ---

@pytest.mark.parametrize("hours, where", [
    ('{mon: "8:00-20:00"}', "calendar.business_hours.mon"),
    ('{tue: "08:00 - 20:00"}', "calendar.business_hours.tue"),
    ('{wed: "08:00"}', "calendar.business_hours.wed"),
    ("{thu: 800}", "calendar.business_hours.thu"),
    ('{fri: "25:00-26:00"}', "calendar.business_hours.fri"),
    ('{sat: "09:60-17:00"}', "calendar.business_hours.sat"),
    ('{sun: "20:00-08:00"}', "calendar.business_hours.sun"),
    ('{mon: "09:00-09:00"}', "calendar.business_hours.mon"),
    ('{monday: "08:00-20:00"}', "calendar.business_hours.monday"),
])
def test_bad_business_hours(tmp_path, hours, where):
    exc = error(tmp_path, f"calendar:\n  business_hours: {hours}\n")
    assert exc.code == "config-bad-value"
    assert exc.message.startswith(f"{where}: "), exc.message


def test_business_hours_replace_the_default_week(tmp_path):
    config = load_config(write(tmp_path, 'calendar: {business_hours: {sun: "10:00-16:00"}}\n'))
    assert config.calendar.business_hours == {"sun": "10:00-16:00"}


def test_bad_extra_holiday(tmp_path):
    exc = error(tmp_path, "calendar: {extra_holidays: [2026-10-01, 2026-13-01]}\n")
    assert (exc.code, exc.message.split(":")[0]) == ("config-bad-value", "calendar.extra_holidays[1]")


def test_bad_timezone(tmp_path):
    exc = error(tmp_path, "calendar: {timezone: Mars/Olympus}\n")
    assert exc.code == "config-bad-value" and exc.message.startswith("calendar.timezone:")


# --- YAML problems surface as config errors with the file's location ---

def test_yaml_problems_are_config_errors(tmp_path):
    exc = error(tmp_path, "router:\n  backend: e5\n  backend: keywords\n")
    assert exc.code == "yaml-duplicate-key"
    assert f"{tmp_path / 'config.yaml'}:3:3:" in exc.message
    exc = error(tmp_path, "router:\n\tbackend: e5\n")
    assert exc.code == "yaml-tab"
    exc = error(tmp_path, "router: {backend: e5\n")
    assert exc.code == "yaml-syntax"


# --- the repo's own config.yaml ---

def test_the_repo_config_loads():
    config = load_config(str(ROOT / "config.yaml"))
    assert config.source == str(ROOT / "config.yaml")
    assert config.root == str(ROOT.resolve())
    assert config.router.backend in ("e5", "keywords")
    assert config.resolve(config.flows.dir).is_dir()
    assert (config.resolve(config.paths.dialplans) / "queues.conf").is_file()
    assert set(config.calendar.business_hours) <= {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}


def test_the_default_lookup_finds_the_repo_config():
    assert load_config().source == str(config_mod.REPO_ROOT / "config.yaml")
