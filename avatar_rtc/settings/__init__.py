"""One typed settings object, built from defaults < TOML file < AVATAR_* env < CLI flags.

Every field of every section is reachable the same three ways, so nothing needs
its own plumbing:

    TOML      [vad] end_silence_ms = 300
    env       AVATAR_VAD_END_SILENCE_MS=300
    CLI       --vad-end-silence-ms 300

docs/configuration.md lists them all (``avatar-rtc config-docs`` writes it).
"""

from .sections import (
    DEFAULT_SYSTEM_PROMPT,
    STT_COMPUTE_TYPES,
    AdminSettings,
    EchoSettings,
    GpuSettings,
    IceSettings,
    LlmSettings,
    LogSettings,
    NoiseSettings,
    RecordingSettings,
    ServerSettings,
    Settings,
    SettingsError,
    StorageSettings,
    SttSettings,
    TtsSettings,
    TurnSettings,
    VadSettings,
)
from .sources import ENV_PREFIX, Setting, add_arguments, as_dict, every_setting, load

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "ENV_PREFIX",
    "STT_COMPUTE_TYPES",
    "AdminSettings",
    "EchoSettings",
    "GpuSettings",
    "IceSettings",
    "LlmSettings",
    "LogSettings",
    "NoiseSettings",
    "RecordingSettings",
    "ServerSettings",
    "Setting",
    "Settings",
    "SettingsError",
    "StorageSettings",
    "SttSettings",
    "TtsSettings",
    "TurnSettings",
    "VadSettings",
    "add_arguments",
    "as_dict",
    "every_setting",
    "load",
]
