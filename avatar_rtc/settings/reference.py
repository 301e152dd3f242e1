"""docs/configuration.md, written from the settings themselves (`avatar-rtc config-docs`)."""

from __future__ import annotations

import itertools

from .sources import ENV_PREFIX, Setting, every_setting

DOC_PATH = "docs/configuration.md"

_HEADER = f"""# Configuration reference

<!-- Generated from avatar_rtc/settings/sections.py by `python -m avatar_rtc config-docs`;
edit the help text there, not this file. -->

Every setting has a default and can be set three ways; a later source wins:

1. a TOML file given by `--config PATH` or `{ENV_PREFIX}CONFIG=PATH`
   (`[vad]` then `end_silence_ms = 300`),
2. an environment variable (`{ENV_PREFIX}VAD_END_SILENCE_MS=300`),
3. a command-line flag of `avatar-rtc serve` (`--vad-end-silence-ms 300`).

Lists are TOML arrays of strings, or comma-separated in the environment and on the
command line. Lists of tables (`[[llm.tools]]`, [tools.md](tools.md)) are set in
the TOML file only. Booleans read `true`/`false`, `yes`/`no`, `on`/`off` or `1`/`0`.
The values are checked once all sources are read; a bad one stops the server with a
message that names it. `--host` and `--port` are short for `--server-host` and
`--server-port`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _default(item: Setting) -> str:
    value = item.default
    if item.is_list:
        return "`[]`" if not value else "`" + ", ".join(value) + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    return f"`{value}`"


def _row(item: Setting) -> str:
    if item.is_tables:  # TOML only
        cells = [f"`{item.key}`", "—", "—", "tables", "`[]`", item.doc]
        return "| " + " | ".join(_cell(c) for c in cells) + " |"
    flags = ", ".join(f"`{flag}`" for flag in (item.flag, *item.aliases))
    kind = "list of str" if item.is_list else item.type_name
    cells = [f"`{item.key}`", flags, f"`{item.env}`", kind, _default(item), item.doc]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def render() -> str:
    """The whole reference, one table per TOML section."""
    parts = [_HEADER]
    for section, items in itertools.groupby(every_setting(), key=lambda s: s.section):
        parts.append(f"\n## [{section}]\n\n"
                     "| Key | Flag | Environment | Type | Default | Description |\n"
                     "|---|---|---|---|---|---|\n")
        parts.append("".join(_row(item) + "\n" for item in items))
    return "".join(parts)
