"""`[[llm.tools]]`: a list of tables in the TOML file, checked key by key."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_rtc.settings import SettingsError, load
from avatar_rtc.settings.sections import ToolSettings

TOOLS = """
[llm]
tool_filler = "Let me check."

[[llm.tools]]
name = "get_time"
description = "The current time"
url = "http://127.0.0.1:9000/time"

[[llm.tools]]
name = "get_weather"
description = "The weather in a city"
entry_point = "my_tools.weather:current"
timeout_s = 2.5
parameters = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }
"""


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "avatar.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_tools_are_read_from_tables(tmp_path: Path) -> None:
    settings = load(env={}, config_path=toml(tmp_path, TOOLS))
    assert settings.llm.tool_filler == "Let me check."
    clock, weather = settings.llm.tools
    assert clock == ToolSettings(name="get_time", description="The current time",
                                 url="http://127.0.0.1:9000/time")
    assert clock.parameters == {"type": "object", "properties": {}}
    assert weather.entry_point == "my_tools.weather:current" and weather.timeout_s == 2.5
    assert weather.parameters["required"] == ["city"]


@pytest.mark.parametrize(("table", "error"), [
    ('name = "t"\ndescription = "d"\nurl = "http://x"\ncolour = "red"',
     r"\[llm\] tools\[0\]: unknown key 'colour'"),
    ('name = "t"\ndescription = "d"\nurl = "http://x"\ntimeout_s = "soon"',
     r"\[llm\] tools\[0\] timeout_s: expected a number"),
    ('name = "t"\ndescription = "d"\nurl = "http://x"\nparameters = "object"',
     r"parameters: expected a table"),
    ('name = "t"\ndescription = "d"', r"llm.tools\[0\] \(t\): set exactly one of url and "
                                      "entry_point"),
    ('name = "t"\ndescription = "d"\nurl = "http://x"\nentry_point = "m:f"',
     "set exactly one of url and entry_point"),
    ('name = "t"\ndescription = "d"\nurl = "ftp://x"', "url must start with http"),
    ('name = "t"\ndescription = "d"\nentry_point = "nocolon"', '"module:function"'),
    ('name = "bad name"\ndescription = "d"\nurl = "http://x"', "name must be 1-64"),
    ('name = "t"\nurl = "http://x"', "description is required"),
    ('name = "t"\ndescription = "d"\nurl = "http://x"\ntimeout_s = 0', "timeout_s must be"),
    ('name = "t"\ndescription = "d"\nurl = "http://x"\nparameters = { type = "string" }',
     'parameters must be a JSON schema with "type" = "object"'),
])
def test_a_bad_tool_is_a_precise_error(tmp_path: Path, table: str, error: str) -> None:
    with pytest.raises(SettingsError, match=error):
        load(env={}, config_path=toml(tmp_path, f"[[llm.tools]]\n{table}\n"))


def test_two_tools_of_one_name_are_refused(tmp_path: Path) -> None:
    one = '[[llm.tools]]\nname = "t"\ndescription = "d"\nurl = "http://x"\n'
    with pytest.raises(SettingsError, match=r"llm.tools\[1\] \(t\): name declared twice"):
        load(env={}, config_path=toml(tmp_path, one + one))


def test_tools_are_set_in_the_toml_file_only(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="AVATAR_LLM_TOOLS: a list of tables, set in the "
                                            "TOML file only"):
        load(env={"AVATAR_LLM_TOOLS": "get_time"})
    with pytest.raises(SettingsError, match=r"expected an array of tables"):
        load(env={}, config_path=toml(tmp_path, '[llm]\ntools = ["get_time"]\n'))
