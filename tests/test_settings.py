"""Settings: defaults < TOML < AVATAR_* env < CLI flags, coercion, validation, masking."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from avatar_rtc import cli
from avatar_rtc.settings import (
    DEFAULT_SYSTEM_PROMPT,
    Settings,
    SettingsError,
    add_arguments,
    as_dict,
    every_setting,
    load,
)
from avatar_rtc.settings.reference import DOC_PATH, render

ROOT = Path(__file__).resolve().parent.parent


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def toml(tmp_path: Path, text: str, name: str = "avatar.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults -------------------------------------------------------------


def test_defaults_with_empty_env() -> None:
    settings = load(env={})
    assert settings == Settings()
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.server.inbound_jitter_frames == 1
    assert settings.ice.stun_urls == []
    assert settings.ice.host_addresses == []
    assert settings.vad.threshold == 0.5
    assert settings.vad.neg_threshold == 0.35
    assert settings.vad.end_silence_ms == 320
    assert settings.vad.speculative is True
    assert settings.stt.model == "tiny.en"
    assert settings.llm.backend == "llama-cpp"
    assert settings.llm.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert settings.tts.voice == "joe-medium"
    assert settings.log.json is False


def test_default_lists_are_not_shared() -> None:
    a, b = Settings(), Settings()
    a.ice.stun_urls.append("stun:example.org")
    assert b.ice.stun_urls == []


def test_defaults_validate() -> None:
    settings = Settings()
    assert settings.validate() is settings


# -- the three sources ----------------------------------------------------


def test_toml_file_values(tmp_path: Path) -> None:
    path = toml(
        tmp_path,
        """
        [server]
        host = "0.0.0.0"
        port = 9000
        call_max_s = 60

        [ice]
        stun_urls = ["stun:a.example:3478", "stun:b.example:3478"]

        [vad]
        threshold = 0.6
        speculative = false

        [log]
        json = true
        """,
    )
    settings = load(env={}, config_path=path)
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9000
    assert settings.server.call_max_s == 60.0
    assert isinstance(settings.server.call_max_s, float)
    assert settings.ice.stun_urls == ["stun:a.example:3478", "stun:b.example:3478"]
    assert settings.vad.threshold == 0.6
    assert settings.vad.speculative is False
    assert settings.log.json is True
    # Untouched keys keep their defaults.
    assert settings.server.max_calls == 4
    assert settings.vad.end_silence_ms == 320


def test_env_values() -> None:
    settings = load(
        env={
            "AVATAR_SERVER_PORT": "9001",
            "AVATAR_VAD_END_SILENCE_MS": "480",
            "AVATAR_VAD_THRESHOLD": "0.7",
            "AVATAR_LLM_SYSTEM_PROMPT": "Be brief.",
            "AVATAR_ICE_TURN_URLS": "turn:t.example:3478?transport=udp",
            "AVATAR_LOG_JSON": "yes",
            "UNRELATED": "ignored",
            "AVATARX": "ignored: no underscore after the prefix",
        }
    )
    assert settings.server.port == 9001
    assert isinstance(settings.server.port, int)
    assert settings.vad.end_silence_ms == 480
    assert settings.vad.threshold == 0.7
    assert settings.llm.system_prompt == "Be brief."
    assert settings.ice.turn_urls == ["turn:t.example:3478?transport=udp"]
    assert settings.log.json is True


def test_cli_flags() -> None:
    args = parse(
        [
            "--vad-end-silence-ms", "400",
            "--ice-host-addresses", "127.0.0.1,::1",
            "--server-max-calls", "2",
            "--vad-speculative", "off",
            "--stt-language", "", "--stt-model", "base",
        ]
    )
    settings = load(args, env={})
    assert settings.vad.end_silence_ms == 400
    assert settings.ice.host_addresses == ["127.0.0.1", "::1"]
    assert settings.server.max_calls == 2
    assert settings.vad.speculative is False
    assert settings.stt.language == ""
    assert settings.server.port == 8080  # not given: default


def test_every_field_has_a_cli_flag_defaulting_to_none() -> None:
    args = parse([])
    expected = {
        f"setting:{section.name}.{f.name}"
        for section in dataclasses.fields(Settings)
        for f in dataclasses.fields(getattr(Settings(), section.name))
    } - {"setting:llm.tools"}  # a list of tables: TOML only
    present = {k for k in vars(args) if k.startswith("setting:")}
    assert present == expected
    assert all(vars(args)[k] is None for k in present)
    assert args.config is None
    # No flags: nothing overrides the defaults.
    assert load(args, env={}) == Settings()


def test_host_and_port_are_aliases_of_the_server_flags() -> None:
    settings = load(parse(["--host", "0.0.0.0", "--port", "9000"]), env={})
    assert settings.server.host == "0.0.0.0"
    assert settings.server.port == 9000
    # One setting, one destination: the last spelling given wins, as for any flag.
    assert load(parse(["--server-port", "9001", "--port", "9002"]), env={}).server.port == 9002
    assert load(parse(["--port", "9002", "--server-port", "9001"]), env={}).server.port == 9001


def test_every_setting_has_a_one_line_help() -> None:
    for item in every_setting():
        assert item.doc and "\n" not in item.doc, item.name


def test_precedence_defaults_toml_env_cli(tmp_path: Path) -> None:
    key_toml = "[vad]\nend_silence_ms = 350\nmin_speech_ms = 150\npreroll_ms = 100\n"
    path = toml(tmp_path, key_toml)
    env = {"AVATAR_VAD_END_SILENCE_MS": "450", "AVATAR_VAD_MIN_SPEECH_MS": "160"}

    assert load(env={}).vad.end_silence_ms == 320
    assert load(env={}, config_path=path).vad.end_silence_ms == 350
    assert load(env=env, config_path=path).vad.end_silence_ms == 450
    args = parse(["--config", str(path), "--vad-end-silence-ms", "550"])
    settings = load(args, env=env)
    assert settings.vad.end_silence_ms == 550  # CLI beats env beats TOML
    assert settings.vad.min_speech_ms == 160  # env beats TOML
    assert settings.vad.preroll_ms == 100  # TOML beats default
    assert settings.vad.max_utterance_s == 20.0  # default


def test_config_flag_and_config_path(tmp_path: Path) -> None:
    from_flag = toml(tmp_path, "[server]\nport = 9100\n", "flag.toml")
    from_env = toml(tmp_path, "[server]\nport = 9200\n", "env.toml")
    explicit = toml(tmp_path, "[server]\nport = 9300\n", "explicit.toml")
    env = {"AVATAR_CONFIG": str(from_env)}
    assert load(env=env).server.port == 9200
    assert load(parse(["--config", str(from_flag)]), env=env).server.port == 9100
    assert load(parse(["--config", str(from_flag)]), env=env, config_path=explicit).server.port \
        == 9300


def test_avatar_config_env_points_to_toml(tmp_path: Path) -> None:
    path = toml(tmp_path, '[tts]\nvoice = "/voices/x.onnx"\nspeed = 1.25\n')
    settings = load(env={"AVATAR_CONFIG": str(path)})
    assert settings.tts.voice == "/voices/x.onnx"
    assert settings.tts.speed == 1.25
    # An empty AVATAR_CONFIG means "no file", not an error.
    assert load(env={"AVATAR_CONFIG": ""}) == Settings()


def test_load_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AVATAR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AVATAR_SERVER_MAX_CALLS", "7")
    assert load().server.max_calls == 7


# -- coercion ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a,b", ["a", "b"]),
        (" a , b ,", ["a", "b"]),
        ("single", ["single"]),
        ("", []),
        (" , ,", []),
        ("stun:x.example:3478,stun:y.example:19302", ["stun:x.example:3478",
                                                        "stun:y.example:19302"]),
    ],
)
def test_list_from_comma_string(raw: str, expected: list[str]) -> None:
    assert load(env={"AVATAR_ICE_STUN_URLS": raw}).ice.stun_urls == expected


def test_list_in_toml_must_hold_strings(tmp_path: Path) -> None:
    path = toml(tmp_path, "[ice]\nstun_urls = [1, 2]\n")
    with pytest.raises(SettingsError, match="stun_urls: expected a list of strings"):
        load(env={}, config_path=path)
    path = toml(tmp_path, "[ice]\nstun_urls = 5\n")
    with pytest.raises(SettingsError, match="expected a list of strings"):
        load(env={}, config_path=path)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True), (" On ", True),
        ("false", False), ("False", False), ("0", False), ("no", False), ("off", False),
    ],
)
def test_bool_parsing(raw: str, expected: bool) -> None:
    assert load(env={"AVATAR_VAD_SPECULATIVE": raw}).vad.speculative is expected
    assert load(parse(["--log-json", raw]), env={}).log.json is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "", "tru"])
def test_bad_bool(raw: str) -> None:
    with pytest.raises(SettingsError, match="AVATAR_VAD_SPECULATIVE: expected true or false"):
        load(env={"AVATAR_VAD_SPECULATIVE": raw})


def test_bad_bool_from_cli_names_the_flag() -> None:
    with pytest.raises(SettingsError, match="--log-json: expected true or false, got 'sure'"):
        load(parse(["--log-json", "sure"]), env={})


def test_string_for_int_in_toml(tmp_path: Path) -> None:
    path = toml(tmp_path, '[server]\nport = "eighty"\n')
    with pytest.raises(SettingsError, match=r"\[server\] port: expected a number, got 'eighty'"):
        load(env={}, config_path=path)


def test_numeric_string_for_int_in_toml_is_rejected(tmp_path: Path) -> None:
    path = toml(tmp_path, '[server]\nport = "8081"\n')
    with pytest.raises(SettingsError, match="port"):
        load(env={}, config_path=path)


def test_fractional_float_for_int(tmp_path: Path) -> None:
    path = toml(tmp_path, "[vad]\nend_silence_ms = 400.5\n")
    with pytest.raises(SettingsError, match=r"end_silence_ms: expected an integer, got 400\.5"):
        load(env={}, config_path=path)
    with pytest.raises(SettingsError, match="--vad-end-silence-ms: expected a number"):
        load(parse(["--vad-end-silence-ms", "400.5"]), env={})


def test_infinite_float_for_int_is_a_settings_error(tmp_path: Path) -> None:
    path = toml(tmp_path, "[server]\nport = inf\n")
    with pytest.raises(SettingsError, match="port"):
        load(env={}, config_path=path)


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    path = toml(tmp_path, "[server]\nmax_calls = true\n")
    with pytest.raises(SettingsError, match="max_calls: expected a number, got True"):
        load(env={}, config_path=path)


def test_number_for_string_in_toml(tmp_path: Path) -> None:
    path = toml(tmp_path, "[server]\nhost = 127\n")
    with pytest.raises(SettingsError, match="host: expected a string, got 127"):
        load(env={}, config_path=path)


def test_int_for_float_is_accepted(tmp_path: Path) -> None:
    path = toml(tmp_path, "[tts]\nspeed = 2\n")
    speed = load(env={}, config_path=path).tts.speed
    assert speed == 2.0
    assert isinstance(speed, float)


def test_bad_number_from_env() -> None:
    with pytest.raises(SettingsError, match="AVATAR_SERVER_PORT: expected a number, got 'x80'"):
        load(env={"AVATAR_SERVER_PORT": "x80"})


# -- unknown names ----------------------------------------------------------


def test_unknown_section_in_toml(tmp_path: Path) -> None:
    path = toml(tmp_path, "[sever]\nport = 1\n")
    with pytest.raises(SettingsError, match="unknown section 'sever'") as info:
        load(env={}, config_path=path)
    assert str(path) in str(info.value)


def test_unknown_key_in_toml(tmp_path: Path) -> None:
    path = toml(tmp_path, "[vad]\nend_silense_ms = 300\n")
    with pytest.raises(SettingsError, match=r"unknown setting vad\.end_silense_ms"):
        load(env={}, config_path=path)


def test_top_level_scalar_in_toml(tmp_path: Path) -> None:
    path = toml(tmp_path, "port = 80\n")
    with pytest.raises(SettingsError, match="top-level key 'port' must be a"):
        load(env={}, config_path=path)


def test_unknown_section_in_env() -> None:
    with pytest.raises(SettingsError, match="AVATAR_SEVER_PORT: unknown section 'sever'"):
        load(env={"AVATAR_SEVER_PORT": "1"})


def test_unknown_key_in_env() -> None:
    with pytest.raises(SettingsError, match=r"AVATAR_VAD_END_SILENSE_MS: unknown setting "
                                            r"vad\.end_silense_ms"):
        load(env={"AVATAR_VAD_END_SILENSE_MS": "300"})


def test_unknown_cli_flag_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse(["--vad-end-silense-ms", "300"])
    assert info.value.code == 2
    assert "--vad-end-silense-ms" in capsys.readouterr().err


# -- validation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AVATAR_SERVER_PORT": "0"}, "server.port must be 1-65535"),
        ({"AVATAR_SERVER_PORT": "65536"}, "server.port must be 1-65535"),
        ({"AVATAR_SERVER_MAX_CALLS": "0"}, "server.max_calls"),
        ({"AVATAR_SERVER_INBOUND_JITTER_FRAMES": "17"}, "server.inbound_jitter_frames"),
        ({"AVATAR_VAD_THRESHOLD": "1.5"}, "vad.threshold must be between 0 and 1"),
        ({"AVATAR_VAD_THRESHOLD": "0"}, "vad.threshold"),
        ({"AVATAR_VAD_NEG_THRESHOLD": "0.6"}, "vad.neg_threshold must be between 0 and "
                                              "vad.threshold"),
        ({"AVATAR_VAD_THRESHOLD": "0.3"}, "vad.neg_threshold"),  # default neg 0.35 > 0.3
        ({"AVATAR_VAD_END_SILENCE_MS": "31"}, "vad.end_silence_ms must be >= 32"),
        ({"AVATAR_VAD_MAX_UTTERANCE_S": "1"}, "vad.max_utterance_s"),
        ({"AVATAR_STT_MIN_WINDOW_S": "31"}, "stt.min_window_s"),
        ({"AVATAR_LLM_BACKEND": "openai"}, "llm.base_url is required with llm.backend=openai"),
        ({"AVATAR_LLM_BACKEND": "gpt"}, "llm.backend: llama-cpp or openai"),
        ({"AVATAR_TTS_SPEED": "5"}, "tts.speed must be 0.25-4"),
        ({"AVATAR_TTS_SPEAK_AHEAD_S": "-1"}, "tts.speak_ahead_s must be >= 0"),
        ({"AVATAR_LLM_MAX_SENTENCES": "-1"}, "llm.max_sentences must be >= 0"),
        ({"AVATAR_LLM_WEIGHTS": "q4_0"}, "llm.weights: q8_0 or q4_1"),
        ({"AVATAR_LOG_LEVEL": "LOUD"}, "log.level: one of"),
    ],
)
def test_validation_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(env=env)
    assert message in str(info.value)


def test_validation_accepts_edges() -> None:
    settings = load(
        env={
            "AVATAR_SERVER_PORT": "65535",
            "AVATAR_VAD_NEG_THRESHOLD": "0.5",  # equal to threshold is allowed
            "AVATAR_VAD_END_SILENCE_MS": "32",
            "AVATAR_LLM_BACKEND": "openai",
            "AVATAR_LLM_BASE_URL": "http://127.0.0.1:8000/v1",
            "AVATAR_LOG_LEVEL": "debug",
        }
    )
    assert settings.server.port == 65535
    assert settings.vad.neg_threshold == settings.vad.threshold == 0.5
    assert settings.llm.backend == "openai"


def test_validation_runs_after_all_sources(tmp_path: Path) -> None:
    # TOML alone would be invalid (openai without base_url); env completes it.
    path = toml(tmp_path, '[llm]\nbackend = "openai"\n')
    with pytest.raises(SettingsError, match="base_url"):
        load(env={}, config_path=path)
    settings = load(env={"AVATAR_LLM_BASE_URL": "http://h/v1"}, config_path=path)
    assert settings.llm.base_url == "http://h/v1"


# -- files ---------------------------------------------------------------------


def test_malformed_toml_names_the_path(tmp_path: Path) -> None:
    path = toml(tmp_path, "[server\nport = 80\n", "broken.toml")
    with pytest.raises(SettingsError) as info:
        load(env={}, config_path=path)
    assert str(path) in str(info.value)
    assert "config file" in str(info.value)


def test_missing_toml_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SettingsError) as info:
        load(env={"AVATAR_CONFIG": str(path)})
    assert str(path) in str(info.value)


# -- as_dict ---------------------------------------------------------------------


def test_as_dict_masks_secrets() -> None:
    settings = load(
        env={
            "AVATAR_LLM_API_KEY": "sk-secret",
            "AVATAR_ICE_TURN_CREDENTIAL": "hunter2",
            "AVATAR_ICE_TURN_USERNAME": "bob",
            "AVATAR_ADMIN_TOKEN": "s3cret-token",
            "AVATAR_STORAGE_DATABASE_URL": "postgresql://avatar:p%40ss:w0rd@db:5432/avatar",
            "AVATAR_SERVER_METRICS_TOKEN": "scrape-me",
        }
    )
    data = as_dict(settings)
    assert data["storage"]["database_url"] == "postgresql://avatar:***@db:5432/avatar"
    assert "w0rd" not in repr(data)
    assert data["admin"]["token"] == "***"
    assert data["server"]["metrics_token"] == "***"
    assert "scrape-me" not in repr(data)
    assert "s3cret-token" not in repr(data)
    assert data["llm"]["api_key"] == "***"
    assert data["ice"]["turn_credential"] == "***"
    assert data["ice"]["turn_username"] == "bob"
    assert "sk-secret" not in repr(data)
    assert "hunter2" not in repr(data)
    # The settings themselves are untouched.
    assert settings.llm.api_key == "sk-secret"
    assert settings.ice.turn_credential == "hunter2"


def test_as_dict_shape_and_empty_secret() -> None:
    settings = load(env={"AVATAR_LLM_API_KEY": ""})
    data: dict[str, Any] = as_dict(settings)
    assert set(data) == {f.name for f in dataclasses.fields(Settings)}
    assert data["server"]["port"] == 8080
    assert data["ice"]["turn_credential"] == ""  # nothing to hide
    assert data["llm"]["api_key"] == ""
    assert data["storage"]["database_url"] == ""
    assert as_dict(load(env={"AVATAR_STORAGE_DATABASE_URL": "postgresql://me@db/x"})
                   )["storage"]["database_url"] == "postgresql://me@db/x"  # no password
    assert as_dict(Settings())["llm"]["api_key"] == "***"  # the default "none" is masked


# -- the CLI entry point ------------------------------------------------------------


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A clean AVATAR_* environment, and app creation / serving that only record a call."""
    import avatar_rtc.app
    import avatar_rtc.drain

    for name in list(os.environ):
        if name.startswith("AVATAR_"):
            monkeypatch.delenv(name)
    started: list[str] = []

    def no_app(*args: Any, **kwargs: Any) -> Any:
        started.append("create_app")
        raise AssertionError("create_app must not be called")

    def no_run(*args: Any, **kwargs: Any) -> None:
        started.append("run_app")
        raise AssertionError("run_app must not be called")

    monkeypatch.setattr(avatar_rtc.app, "create_app", no_app)
    monkeypatch.setattr(avatar_rtc.drain, "serve", no_run)
    return started


def test_cli_serve_bad_port_exits_2_without_starting(
    no_start: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["serve", "--server-port", "0"])
    captured = capsys.readouterr()
    assert code == 2
    assert no_start == []
    assert "avatar-rtc: settings error: server.port must be 1-65535" in captured.err
    assert captured.out == ""


def test_cli_serve_bad_type_exits_2(
    no_start: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["serve", "--vad-threshold", "high"]) == 2
    assert no_start == []
    assert "--vad-threshold: expected a number, got 'high'" in capsys.readouterr().err


def test_models_take_turns_speak_ahead_and_max_sentences_reach_their_users() -> None:
    from avatar_rtc.calls import conversation_config

    settings = load(env={"AVATAR_SERVER_MODELS_TAKE_TURNS": "false",
                         "AVATAR_TTS_SPEAK_AHEAD_S": "1.5", "AVATAR_LLM_MAX_SENTENCES": "0"})
    assert settings.server.models_take_turns is False
    assert conversation_config(settings).speak_ahead_s == 1.5
    assert conversation_config(settings).max_sentences == 0
    assert conversation_config(load(env={})).max_sentences == 3
    assert load(env={}).server.models_take_turns is True


def test_cli_serve_takes_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    import avatar_rtc.app
    import avatar_rtc.drain

    for name in list(os.environ):
        if name.startswith("AVATAR_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    served: list[dict[str, Any]] = []
    monkeypatch.setattr(cli, "setup_logging", lambda *args: None)
    monkeypatch.setattr(avatar_rtc.app, "create_app", lambda settings: "app")

    async def serve(app: object, host: str, port: int, drain_timeout_s: float, *,
                    ssl_context: object = None) -> None:
        served.append({"host": host, "port": port, "tls": ssl_context})

    monkeypatch.setattr(avatar_rtc.drain, "serve", serve)
    assert cli.main(["serve", "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert [(s["host"], s["port"], s["tls"]) for s in served] == [("0.0.0.0", 9000, None)]


def test_serve_help_names_the_aliases_and_what_each_flag_sets(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # whatever the terminal's width
    assert "--server-host STR, --host STR" in text
    assert "--server-port INT, --port INT" in text
    assert "--host and --port are short for --server-host and --server-port" in text
    assert "TCP port to listen on (default: 8080)" in text
    assert "Silence that ends the user's turn (default: 320)" in text


# -- the configuration reference ----------------------------------------------------


def test_the_configuration_reference_is_up_to_date() -> None:
    path = ROOT / DOC_PATH
    assert path.exists() and path.read_text(encoding="utf-8") == render(), (
        f"{DOC_PATH} is stale: run `python -m avatar_rtc config-docs` in the repository root"
    )


def test_the_reference_lists_every_setting_every_way() -> None:
    text = render()
    for item in every_setting():
        if item.is_tables:  # TOML only: no flag, no environment variable
            assert f"| `{item.key}` | — | — | tables | `[]` | {item.doc} |" in text
            continue
        row = next(line for line in text.splitlines() if f"`{item.env}`" in line)
        assert f"`{item.key}`" in row and f"`{item.flag}`" in row and item.doc in row
    assert "`--server-port`, `--port`" in text
    assert '| `host` | `--server-host`, `--host` | `AVATAR_SERVER_HOST` | str | `"127.0.0.1"` |' \
        in text


def test_config_docs_writes_the_reference(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "docs" / "configuration.md"
    assert cli.main(["config-docs", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render()
    assert str(out) in capsys.readouterr().out
