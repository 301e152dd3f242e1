"""One typed settings object, built from defaults < TOML file < AVATAR_* env < CLI flags.

Every field of every section is reachable the same three ways, so nothing needs
its own plumbing:

    TOML      [vad] end_silence_ms = 300
    env       AVATAR_VAD_END_SILENCE_MS=300
    CLI       --vad-end-silence-ms 300
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tomllib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avatar_rtc.backends.plugins import backend_names

ENV_PREFIX = "AVATAR_"

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant on a phone call. "
    "Answer in one or two short spoken sentences. "
    "Never use lists, markdown or emoji."
)


class SettingsError(ValueError):
    """A setting is missing, unknown or out of range; the message names it."""


@dataclass
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    max_calls: int = 4
    max_body_bytes: int = 64 * 1024
    # Seconds; 0 disables a limit.
    connect_timeout_s: float = 15.0
    disconnect_grace_s: float = 5.0
    call_max_s: float = 1800.0
    idle_timeout_s: float = 300.0
    static_dir: str = ""  # empty: the static/ folder beside the package
    # Inbound audio frames aiortc holds before release (its default 4 = 80 ms). The
    # server's ears are VAD and STT, not a person: 1 frame is enough on most networks.
    inbound_jitter_frames: int = 1
    metrics: bool = True  # Prometheus text at GET /metrics
    # Local CPU models (Whisper, llama.cpp, Piper) run one step at a time, the most
    # urgent first, each on all its threads. Off: they run side by side (many cores).
    models_take_turns: bool = True


@dataclass
class IceSettings:
    # Default none: offline first. aiortc would otherwise probe a public STUN server.
    stun_urls: list[str] = field(default_factory=list)
    turn_urls: list[str] = field(default_factory=list)
    turn_username: str = ""
    turn_credential: str = ""
    # Host addresses ICE may offer; empty lets aioice choose (it never offers loopback).
    host_addresses: list[str] = field(default_factory=list)


@dataclass
class VadSettings:
    threshold: float = 0.5  # speech probability that counts as speech
    neg_threshold: float = 0.35  # below this, speech has stopped (hysteresis)
    min_speech_ms: int = 200  # speech needed before a turn (or a barge-in) starts
    end_silence_ms: int = 320  # silence that ends the user's turn
    max_utterance_s: float = 20.0
    preroll_ms: int = 200  # audio kept from before speech onset
    # The agent pauses its audio after this much user speech, and resumes if the speech
    # turns out shorter than min_speech_ms (a cough, "mhm"). 0 disables pausing.
    barge_in_pause_ms: int = 96
    # Speech that interrupted the agent ends only after this much silence: people who
    # cut in often pause mid-thought ("Stop, ... let me ask something else").
    barge_in_end_silence_ms: int = 800
    # Start STT+LLM+TTS as soon as the user pauses; keep the result only if the pause
    # becomes the end of the turn.
    speculative: bool = True
    # While the user speaks, transcribe the speech so far this often and let the LLM
    # evaluate those words ahead of the end of the turn. 0 disables it.
    listen_ahead_ms: int = 640


@dataclass
class SttSettings:
    backend: str = "faster-whisper"
    # "tiny.en" and "base" are the packaged models; otherwise a CTranslate2 folder,
    # or a model name when the operator has internet.
    model: str = "tiny.en"
    device: str = "cpu"  # "cpu", "cuda" or "cuda:N"
    # int8 on a CPU; float16 or int8_float16 on a GPU (see STT_COMPUTE_TYPES).
    compute_type: str = "int8"
    # tiny.en on the 2-core VM: one thread 33/90/191 ms for 2/6/11 s of speech, two
    # 38/120/224 ms; beside a busy process 31/133/239 against 119/172/233.
    cpu_threads: int = 1
    language: str = "en"  # empty: detect per turn (multilingual models)
    beam_size: int = 1
    # Whisper's encoder window is fitted to the utterance but never below this (30 =
    # Whisper's fixed window; shorter is much faster on a CPU: 3 s encodes in a quarter
    # of the time of 10 s; the repeats short windows cause are cut).
    min_window_s: float = 3.0


@dataclass
class LlmSettings:
    backend: str = "llama-cpp"  # or "openai" (vLLM, llama.cpp server, any compatible API)
    model_path: str = ""  # llama-cpp GGUF; empty: the packaged SmolLM2-135M-Instruct
    # The packaged model's weights: "q8_0" (converted once from the shipped Q4_1 into
    # <storage.data_dir>/models; 1.6x faster per token on one thread) or "q4_1".
    weights: str = "q8_0"
    # Token generation: the most; one when that was faster lately, or while other calls
    # are live (each model step then runs on one thread).
    n_threads: int = 2
    n_batch_threads: int = 2  # prompt evaluation
    n_ctx: int = 2048
    base_url: str = ""  # openai backend
    api_key: str = "none"
    model: str = ""  # openai backend model name
    max_tokens: int = 120
    # A reply stops after this many sentences (0: no limit); see ConversationConfig.
    max_sentences: int = 3
    temperature: float = 0.2
    seed: int = 0
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_history_turns: int = 12
    request_timeout_s: float = 30.0


@dataclass
class TtsSettings:
    # The backend of calls without a voice profile; always loaded.
    backend: str = "piper"
    # More backends to load at startup ("piper", "f5-tts", "cosyvoice"); a voice profile
    # picks one by its backend. One that is not installed or has no weights is reported
    # at startup and in /health.
    backends: list[str] = field(default_factory=list)
    # Piper: a packaged voice name ("joe-medium") or a path to a .onnx voice.
    voice: str = "joe-medium"
    speed: float = 1.0
    threads: int = 2  # the LLM is held while the first chunk is synthesized
    # Chunks after the first are synthesized (and the LLM writes on) only when less
    # than this much of the reply is left to play. 0: as fast as the models go.
    speak_ahead_s: float = 3.0
    device: str = "cuda"  # f5-tts and cosyvoice: "cuda", "cuda:N" or "cpu"
    profile_cache_size: int = 32  # prepared reference clips kept per cloning backend
    crossfade_ms: float = 150.0  # overlap where two synthesized pieces of a sentence meet
    seed: int = 0  # cloning backends sample noise; a fixed seed makes them repeatable
    # F5-TTS (fast cloning). Empty paths: the folders tools/download-models writes
    # under <storage.data_dir>/models.
    f5_model: str = "F5TTS_v1_Base"  # a config shipped with f5-tts, or a .yaml path
    f5_ckpt: str = ""  # .safetensors or .pt checkpoint
    f5_vocab: str = ""  # empty: the vocab.txt shipped with f5-tts
    f5_vocoder: str = ""  # Vocos folder (config.yaml, pytorch_model.bin)
    f5_nfe_step: int = 32  # flow-matching steps: 16 is ~2x faster, slightly rougher
    f5_cfg_strength: float = 2.0
    f5_sway_sampling: float = -1.0
    # CosyVoice (high quality). It is not on PyPI: cosyvoice_repo is a clone of
    # FunAudioLLM/CosyVoice (with its requirements installed), put on sys.path.
    cosyvoice_model: str = ""  # model folder (CosyVoice2-0.5B, Fun-CosyVoice3-0.5B)
    cosyvoice_repo: str = ""
    cosyvoice_fp16: bool = True
    cosyvoice_stream: bool = True
    # Chunking of the reply for TTS: the first chunk may end at a clause boundary once
    # first_chunk_min_chars long, and is cut at a space past first_chunk_max_chars.
    # Short, so the first audio comes soon (Piper: ~40 ms + ~3 ms a character; the LLM
    # ~16 ms a token), e.g. "The sun is" + "about 150 million kilometres away."
    first_chunk_min_chars: int = 8
    first_chunk_max_chars: int = 16
    clause_min_chars: int = 40


@dataclass
class StorageSettings:
    data_dir: str = "data"
    database_url: str = ""  # empty: sqlite:///<data_dir>/avatar.db


@dataclass
class RecordingSettings:
    enabled: bool = True
    # Recordings older than this are deleted (their rows say so); 0 keeps them forever.
    retention_days: float = 30.0
    # Total size of all recordings; the oldest go first above it. 0: no cap.
    max_disk_mb: float = 2048.0
    bitrate_kbps: int = 24  # Ogg/Opus, per track


@dataclass
class AdminSettings:
    # Bearer token for /admin; empty: the admin routes answer only loopback clients.
    token: str = ""
    max_upload_bytes: int = 20 * 1024 * 1024
    # Write requests (POST/PATCH/DELETE) per client per minute; 0: unlimited.
    write_rate_per_min: int = 30


@dataclass
class GpuSettings:
    # /offer answers 503 while the GPU's used memory is above this fraction (NVML, or
    # torch when loaded); 1 turns the check off. Without a GPU it never refuses.
    max_memory_fraction: float = 0.9
    device_index: int = 0


@dataclass
class LogSettings:
    level: str = "INFO"
    json: bool = False


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    ice: IceSettings = field(default_factory=IceSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    gpu: GpuSettings = field(default_factory=GpuSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def validate(self) -> Settings:
        checks: list[tuple[bool, str]] = [
            (0 < self.server.port < 65536, "server.port must be 1-65535"),
            (self.server.max_calls >= 1, "server.max_calls must be >= 1"),
            (self.server.max_body_bytes >= 1024, "server.max_body_bytes must be >= 1024"),
            (1 <= self.server.inbound_jitter_frames <= 16,
             "server.inbound_jitter_frames must be 1-16"),
            (0.0 < self.vad.threshold < 1.0, "vad.threshold must be between 0 and 1"),
            (
                0.0 < self.vad.neg_threshold <= self.vad.threshold,
                "vad.neg_threshold must be between 0 and vad.threshold",
            ),
            (self.vad.min_speech_ms >= 0, "vad.min_speech_ms must be >= 0"),
            (self.vad.end_silence_ms >= 32, "vad.end_silence_ms must be >= 32"),
            (self.vad.max_utterance_s > 1.0, "vad.max_utterance_s must be > 1"),
            (self.vad.barge_in_pause_ms >= 0, "vad.barge_in_pause_ms must be >= 0"),
            (self.vad.barge_in_end_silence_ms >= 32, "vad.barge_in_end_silence_ms must be >= 32"),
            (self.vad.listen_ahead_ms == 0 or self.vad.listen_ahead_ms >= 100,
             "vad.listen_ahead_ms must be 0 (off) or >= 100"),
            (self.stt.cpu_threads >= 1, "stt.cpu_threads must be >= 1"),
            (2.0 <= self.stt.min_window_s <= 30.0, "stt.min_window_s must be 2-30"),
            (_is_device(self.stt.device), "stt.device: cpu, cuda or cuda:N"),
            (self.stt.compute_type in STT_COMPUTE_TYPES,
             f"stt.compute_type: one of {', '.join(STT_COMPUTE_TYPES)}"),
            (self.stt.backend in (stt := backend_names("stt")),
             f"stt.backend: {' or '.join(stt)}"),
            (self.llm.backend in (llm := backend_names("llm")),
             f"llm.backend: {' or '.join(llm)}"),
            (
                self.llm.backend != "openai" or bool(self.llm.base_url),
                "llm.base_url is required with llm.backend=openai",
            ),
            (self.llm.weights in ("q8_0", "q4_1"), "llm.weights: q8_0 or q4_1"),
            (self.llm.max_tokens >= 1, "llm.max_tokens must be >= 1"),
            (self.llm.max_sentences >= 0, "llm.max_sentences must be >= 0"),
            (self.tts.backend in (tts := backend_names("tts")),
             f"tts.backend: one of {', '.join(tts)}"),
            (all(b in tts for b in self.tts.backends),
             f"tts.backends: each one of {', '.join(tts)}"),
            (0.25 <= self.tts.speed <= 4.0, "tts.speed must be 0.25-4"),
            (_is_device(self.tts.device), "tts.device: cpu, cuda or cuda:N"),
            (self.tts.profile_cache_size >= 1, "tts.profile_cache_size must be >= 1"),
            (0.0 <= self.tts.crossfade_ms <= 1000.0, "tts.crossfade_ms must be 0-1000"),
            (self.tts.speak_ahead_s >= 0, "tts.speak_ahead_s must be >= 0"),
            (1 <= self.tts.f5_nfe_step <= 128, "tts.f5_nfe_step must be 1-128"),
            (0.0 < self.gpu.max_memory_fraction <= 1.0,
             "gpu.max_memory_fraction must be above 0 and at most 1"),
            (self.gpu.device_index >= 0, "gpu.device_index must be >= 0"),
            (self.recording.retention_days >= 0, "recording.retention_days must be >= 0"),
            (self.recording.max_disk_mb >= 0, "recording.max_disk_mb must be >= 0"),
            (6 <= self.recording.bitrate_kbps <= 256, "recording.bitrate_kbps must be 6-256"),
            (self.admin.max_upload_bytes >= 1024, "admin.max_upload_bytes must be >= 1024"),
            (self.admin.write_rate_per_min >= 0, "admin.write_rate_per_min must be >= 0"),
            (self.log.level.upper() in _LOG_LEVELS, f"log.level: one of {sorted(_LOG_LEVELS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)
        return self


_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}

STT_COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16",
                     "int8_bfloat16", "int16", "float16", "bfloat16", "float32")


def _is_device(device: str) -> bool:
    kind, colon, index = device.partition(":")
    if kind == "cpu":
        return not colon
    return kind == "cuda" and (not colon or index.isdigit())


def _sections() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _field_types(section_type: type[Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(section_type)
    return {f.name: hints[f.name] for f in dataclasses.fields(section_type)}


def _coerce(value: Any, target: Any, where: str, from_text: bool) -> Any:
    """Turns a TOML value or a string from env/CLI into the field's type.

    Env and flags are text and get parsed; TOML values must already have the right
    type, so `port = "8080"` in a TOML file is an error, as TOML users expect.
    """
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
    sections = _sections()
    if section not in sections:
        raise SettingsError(f"{where}: unknown section {section!r}")
    fields = _field_types(sections[section])
    if key not in fields:
        raise SettingsError(f"{where}: unknown setting {section}.{key}")
    setattr(getattr(settings, section), key, _coerce(value, fields[key], where, from_text))


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
    sections = _sections()
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in sections:
            raise SettingsError(f"{name}: unknown section {section!r}")
        _apply(settings, section, key, value, name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds --config and one --section-key flag per setting (all default to None)."""
    parser.add_argument("--config", type=Path, help="TOML settings file (also AVATAR_CONFIG)")
    for section, section_type in _sections().items():
        group = parser.add_argument_group(f"[{section}]")
        defaults = section_type()
        for key, kind in _field_types(section_type).items():
            flag = f"--{section}-{key}".replace("_", "-")
            shown = getattr(defaults, key)
            metavar = "LIST" if typing.get_origin(kind) is list else kind.__name__.upper()
            group.add_argument(
                flag,
                dest=f"setting:{section}.{key}",
                metavar=metavar,
                default=None,
                help=f"(default: {shown!r})",
            )


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
    for section, key in (("llm", "api_key"), ("ice", "turn_credential"), ("admin", "token")):
        if data[section][key]:
            data[section][key] = "***"
    return data
