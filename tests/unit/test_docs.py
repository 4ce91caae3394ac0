"""Meta-tests: every CLI command and config key is in README.md; every step type and field is
in flows/README.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ivr.cli import _parser
from ivr.config import Config
from ivr.flow.registry import step_types

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FLOWS_README = (ROOT / "flows" / "README.md").read_text(encoding="utf-8")


def _config_keys(cls, prefix=""):
    for f in dataclasses.fields(cls):
        if f.name in ("source", "root"):
            continue
        hint = f.type if not isinstance(f.type, str) else None
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            yield from _config_keys(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}"
        del hint


def test_every_config_key_is_documented():
    missing = [k for k in _config_keys(Config) if f"`{k}`" not in README]
    assert not missing, f"config keys missing from README.md: {missing}"


def test_every_cli_command_is_documented():
    sub = next(a for a in _parser()._actions if a.dest == "command")
    missing = [name for name in sub.choices if f"`ivr {name}" not in README]
    assert not missing, f"commands missing from README.md: {missing}"


def test_every_step_type_and_field_is_documented():
    for name, stype in step_types().items():
        assert f"### {name}" in FLOWS_README, f"step type {name} has no section in flows/README.md"
        section = FLOWS_README.split(f"### {name}", 1)[1].split("\n### ", 1)[0]
        for field in stype.fields:
            if field == stype.params_field:
                continue
            assert field in section, f"field {name}.{field} is not documented in flows/README.md"


def test_config_yaml_sets_only_documented_keys():
    import yaml

    data = yaml.safe_load((ROOT / "config.yaml").read_text())

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and f"`{prefix}{k}`" not in README:
                yield from walk(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"

    missing = [k for k in walk(data) if f"`{k}`" not in README]
    assert not missing, missing
