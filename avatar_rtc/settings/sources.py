"""Where settings come from: defaults < TOML file < AVATAR_* env < CLI flags.

Each setting is reached the same three ways, named after its section and key, so
nothing needs its own plumbing. Values are coerced to the field's type here and the
whole object is validated once, after every source.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import math
import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .sections import Settings, SettingsError

ENV_PREFIX = "AVATAR_"

# The spellings aiohttp, uvicorn and `vllm serve` users type.
FLAG_ALIASES: dict[str, tuple[str, ...]] = {
    "server.host": ("--host",),
    "server.port": ("--port",),
}


@dataclass(frozen=True)
class Setting:
    """One field of one section, and the names it is set by."""

    section: str
    key: str
    type: Any
    default: Any
    doc: str

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def flag(self) -> str:
        return f"--{self.section}-{self.key}".replace("_", "-")

    @property
    def aliases(self) -> tuple[str, ...]:
        return FLAG_ALIASES.get(self.name, ())

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section}_{self.key}".upper()

    @property
    def is_list(self) -> bool:
        """A list of strings."""
        return typing.get_origin(self.type) is list and not self.is_tables

    @property
    def is_tables(self) -> bool:
        """A list of tables (`[[section.key]]`): set in the TOML file only."""
        return _table_type(self.type) is not None

    @property
    def type_name(self) -> str:
        if self.is_tables:
            return "tables"
        return "list" if self.is_list else str(self.type.__name__)


def _table_type(target: Any) -> Any:
    """The dataclass of a list-of-tables field, or None."""
    if typing.get_origin(target) is not list:
        return None
    (item,) = typing.get_args(target)
    return item if dataclasses.is_dataclass(item) else None


def _tables(value: Any, item_type: Any, where: str) -> list[Any]:
    """A TOML array of tables as a list of `item_type`: every key known and typed as
    its field (a dict field takes any table)."""
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SettingsError(f"{where}: expected an array of tables ([[...]])")
    hints = typing.get_type_hints(item_type)
    items = []
    for i, table in enumerate(value):
        fields: dict[str, Any] = {}
        for key, raw in table.items():
            here = f"{where}[{i}] {key}"
            if key not in hints:
                raise SettingsError(f"{where}[{i}]: unknown key {key!r} "
                                    f"(known: {', '.join(hints)})")
            target = hints[key]
            if typing.get_origin(target) is dict:
                if not isinstance(raw, dict):
                    raise SettingsError(f"{here}: expected a table")
                fields[key] = raw
            else:
                fields[key] = _coerce(raw, target, here, from_text=False)
        items.append(item_type(**fields))
    return items


def every_setting() -> list[Setting]:
    """Every setting, in the order of the sections and their fields."""
    defaults = Settings()
    found: list[Setting] = []
    for section in dataclasses.fields(Settings):
        section_type = typing.get_type_hints(Settings)[section.name]
        hints = typing.get_type_hints(section_type)
        for f in dataclasses.fields(section_type):
            found.append(Setting(section.name, f.name, hints[f.name],
                                 getattr(getattr(defaults, section.name), f.name),
                                 f.metadata.get("doc", "")))
    return found


@functools.cache
def _lookup() -> dict[str, dict[str, Setting]]:
    sections: dict[str, dict[str, Setting]] = {}
    for item in every_setting():
        sections.setdefault(item.section, {})[item.key] = item
    return sections


def _coerce(value: Any, target: Any, where: str, from_text: bool) -> Any:
    """Turns a TOML value or a string from env/CLI into the field's type.

    Env and flags are text and get parsed; TOML values must already have the right
    type, so `port = "8080"` in a TOML file is an error, as TOML users expect.
    """
    if (item_type := _table_type(target)) is not None:
        if from_text:
            raise SettingsError(f"{where}: a list of tables, set in the TOML file only")
        return _tables(value, item_type, where)
    if not from_text:
        _check_native(value, target, where)
    origin = typing.get_origin(target)
    if origin in (list, Sequence):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        raise SettingsError(f"{where}: expected a list of strings")
    if target is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{where}: expected true or false, got {value!r}")
    if target in (int, float):
        if isinstance(value, bool):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        try:
            number = target(value)
        except (TypeError, ValueError, OverflowError):
            raise SettingsError(f"{where}: expected a number, got {value!r}") from None
        if target is float and not math.isfinite(number):
            raise SettingsError(f"{where}: expected a finite number, got {value!r}")
        return number
    if target is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
        return value
    raise SettingsError(f"{where}: unsupported type {target!r}")


def _check_native(value: Any, target: Any, where: str) -> None:
    if typing.get_origin(target) in (list, Sequence):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where}: expected a list of strings")
    elif target is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
    elif target in (int, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{where}: expected a number, got {value!r}")
        if target is int and isinstance(value, float) and not value.is_integer():
            raise SettingsError(f"{where}: expected an integer, got {value!r}")
    elif target is str and not isinstance(value, str):
        raise SettingsError(f"{where}: expected a string, got {value!r}")


def _apply(settings: Settings, section: str, key: str, value: Any, where: str,
           from_text: bool = True) -> None:
    sections = _lookup()
    if section not in sections:
        raise SettingsError(f"{where}: unknown section {section!r}")
    if key not in sections[section]:
        raise SettingsError(f"{where}: unknown setting {section}.{key}")
    target = sections[section][key].type
    setattr(getattr(settings, section), key, _coerce(value, target, where, from_text))


def _from_toml(settings: Settings, path: Path) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    for section, table in data.items():
        if not isinstance(table, dict):
            raise SettingsError(f"{path}: top-level key {section!r} must be a [table]")
        for key, value in table.items():
            _apply(settings, section, key, value, f"{path} [{section}] {key}", from_text=False)


def _from_env(settings: Settings, env: Mapping[str, str]) -> None:
    sections = _lookup()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections:
            raise SettingsError(f"{name}: unknown section {section!r}")
        _apply(settings, section, key, value, name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --config and one --section-key flag per setting (all default to None);
    --host and --port are aliases of --server-host and --server-port."""
    parser.add_argument("--config", type=Path, help="TOML settings file (also AVATAR_CONFIG)")
    for section, items in itertools.groupby(every_setting(), key=lambda s: s.section):
        group = parser.add_argument_group(f"[{section}]")
        for item in items:
            if item.is_tables:
                continue  # TOML only
            text = f"{item.doc} (default: {item.default!r})".replace("%", "%%")
            group.add_argument(item.flag, *item.aliases, dest=f"setting:{item.name}",
                               metavar=item.type_name.upper(), default=None, help=text)


def load(
    args: argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
    config_path: Path | None = None,
) -> Settings:
    """Builds the settings; precedence is defaults < TOML < environment < CLI flags."""
    env = os.environ if env is None else env
    settings = Settings()
    path = config_path
    if path is None and args is not None:
        path = getattr(args, "config", None)
    if path is None and env.get(ENV_PREFIX + "CONFIG"):
        path = Path(env[ENV_PREFIX + "CONFIG"])
    if path is not None:
        _from_toml(settings, Path(path))
    _from_env(settings, env)
    if args is not None:
        for dest, value in vars(args).items():
            if dest.startswith("setting:") and value is not None:
                section, _, key = dest[len("setting:") :].partition(".")
                flag = f"--{section}-{key}".replace("_", "-")
                _apply(settings, section, key, value, flag)
    return settings.validate()


def as_dict(settings: Settings) -> dict[str, Any]:
    """A JSON-able snapshot (for /health and stored calls), secrets masked."""
    data = dataclasses.asdict(settings)
    for section, key in (("llm", "api_key"), ("ice", "turn_credential"), ("ice", "turn_secret"),
                         ("admin", "token"), ("server", "metrics_token")):
        if data[section][key]:
            data[section][key] = "***"
    data["storage"]["database_url"] = _mask_password(data["storage"]["database_url"])
    return data


def _mask_password(url: str) -> str:
    """postgresql://user:***@host/db: the password of a database URL hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))
