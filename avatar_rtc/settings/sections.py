"""What can be set: the sections of the settings, each field with its one-line help.

The help is the flag's ``--help`` and the line in docs/configuration.md; comments
beside a field say why its default is what it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from avatar_rtc.errors import AvatarError
from avatar_rtc.plugins import backend_names

DEFAULT_SYSTEM_PROMPT = (
    "You are a friendly voice assistant on a phone call. "
    "Answer in one or two short spoken sentences. "
    "Never use lists, markdown or emoji."
)


class SettingsError(AvatarError):
    """A setting is missing, unknown or out of range; the message names it."""


_T = TypeVar("_T")


def setting(default: _T, doc: str) -> _T:
    """A field with its default and its one-line help (lists: ``field(metadata=)``)."""
    return field(default=default, metadata={"doc": doc})


@dataclass
class ServerSettings:
    host: str = setting("127.0.0.1", "Address to listen on (0.0.0.0: every interface)")
    port: int = setting(8080, "TCP port to listen on")
    max_calls: int = setting(4, "Calls at once; /offer refuses more")
    # 0: /ready says "full" only when max_calls are live. 1 or more takes the worker out
    # of the balancer's pool that many calls early, so offers racing its health check
    # still find room rather than a 503 to retry elsewhere.
    ready_headroom: int = setting(
        0, "GET /ready says full this many calls before max_calls is reached")
    max_body_bytes: int = setting(64 * 1024, "Largest request body accepted")
    # aiohttp's only read deadline: it runs from the connection's start and from each
    # answer, so a client that sends its headers slowly ("slow loris") is cut off too.
    keepalive_timeout_s: float = setting(
        15.0, "Seconds a connection may sit idle or take to send a request head (or an offer)")
    # An offer whose sender never starts ICE holds a pending slot until then; a real
    # call connects in well under a second on loopback, a few across networks.
    connect_timeout_s: float = setting(
        5.0, "Seconds an answered offer may take to connect (ICE, DTLS); 0: no limit")
    max_pending_offers: int = setting(
        8, "Answered offers not yet connected, in all; /offer refuses more; 0: no limit")
    max_pending_per_address: int = setting(
        2, "Answered offers not yet connected, per client address; 0: no limit")
    offer_rate_per_min: int = setting(
        30, "POST /offer requests a minute per client address (429 above); 0: no limit")
    disconnect_grace_s: float = setting(
        5.0, "Seconds a disconnected call may take to come back before it ends")
    call_max_s: float = setting(1800.0, "Longest call in seconds; 0: no limit")
    idle_timeout_s: float = setting(
        300.0, "Seconds without speech or replies that end a call; 0: no limit")
    static_dir: str = setting("", "Folder of the web pages; empty: static/ beside the package")
    # SIGTERM: /offer refuses (503), live calls may finish; then they are closed.
    drain_timeout_s: float = setting(
        30.0, "On SIGTERM, seconds live calls may go on before they are closed")
    # aiortc's default is 4 (80 ms). The server's ears are VAD and STT, not a person:
    # 1 frame is enough on most networks.
    inbound_jitter_frames: int = setting(
        1, "Inbound audio frames (20 ms) aiortc holds before releasing them")
    metrics: bool = setting(True, "Serve Prometheus metrics at GET /metrics")
    # Empty keeps /metrics open, as scrapers on the same host expect (docs/security.md).
    metrics_token: str = setting(
        "", "Bearer token GET /metrics needs; empty: open to all (masked in /health)")
    # Browsers give the microphone only to secure contexts: HTTPS, or 127.0.0.1.
    tls_cert: str = setting("", "PEM certificate (chain) to serve HTTPS with; needs tls_key")
    tls_key: str = setting("", "PEM private key of tls_cert")
    # Off: the models run side by side, which only pays with many cores.
    models_take_turns: bool = setting(
        True, "Local CPU models run one step at a time, the most urgent first")


@dataclass
class IceSettings:
    # Default none: offline first. aiortc would otherwise probe a public STUN server.
    stun_urls: list[str] = field(
        default_factory=list, metadata={"doc": "STUN server URLs (stun:host:port)"})
    turn_urls: list[str] = field(
        default_factory=list, metadata={"doc": "TURN server URLs (turn:host:port?transport=udp)"})
    turn_username: str = setting("", "TURN user name (static credentials)")
    turn_credential: str = setting("", "TURN password (static credentials; masked in /health)")
    # coturn's use-auth-secret / static-auth-secret: each call gets its own credentials.
    turn_secret: str = setting(
        "", "Secret shared with the TURN server; issues short-lived credentials per call "
        "(masked in /health)")
    # coturn checks the expiry when a call's relay is allocated; the relay then lives
    # on past it. Longer than server.call_max_s suits TURN servers that check it again.
    turn_ttl_s: int = setting(3600, "Lifetime of issued TURN credentials in seconds")
    relay_only: bool = setting(
        False, "Both the page and the server use only TURN-relayed candidates")
    # aioice never offers loopback on its own.
    host_addresses: list[str] = field(
        default_factory=list,
        metadata={"doc": "Host addresses ICE may offer; empty: aioice chooses"})


@dataclass
class VadSettings:
    threshold: float = setting(0.5, "Speech probability that counts as speech")
    neg_threshold: float = setting(0.35, "Below this, speech has stopped (hysteresis)")
    min_speech_ms: int = setting(200, "Speech needed before a turn (or a barge-in) starts")
    end_silence_ms: int = setting(320, "Silence that ends the user's turn")
    max_utterance_s: float = setting(20.0, "Longest user turn in seconds; it ends there")
    preroll_ms: int = setting(200, "Audio kept from before speech onset")
    # The pause is undone if the speech turns out shorter than min_speech_ms (a
    # cough, "mhm").
    barge_in_pause_ms: int = setting(
        96, "The agent pauses its audio after this much user speech; 0: never")
    # People who cut in often pause mid-thought ("Stop, ... let me ask something else").
    barge_in_end_silence_ms: int = setting(
        800, "Silence that ends speech which interrupted the agent")
    # The result is kept only if the pause becomes the end of the turn.
    speculative: bool = setting(True, "Start STT, LLM and TTS as soon as the user pauses")
    listen_ahead_ms: int = setting(
        640, "Transcribe speech so far this often and prefill the LLM; 0: off")


@dataclass
class TurnSettings:
    """Turn-taking: when a pause ends the user's turn, and talk over the agent."""

    model: str = setting("smart-turn", "End-of-turn model heard at each pause: smart-turn or none")
    # Smart Turn's probability that the speaker is done, with the words heard so far.
    complete_threshold: float = setting(
        0.5, "At or above this, a pause with complete-sounding words ends the turn at once")
    incomplete_threshold: float = setting(
        0.1, "Below this, the speaker is going on, whatever the words")
    incomplete_end_silence_ms: int = setting(
        2000, "Silence that ends a turn heard as unfinished (\"and\", \"um\", \"tell me\")")
    text_cues: bool = setting(True, "Judge the words of the pause's transcript too")
    # Short speech over the agent is heard out before it stops the agent.
    backchannels: bool = setting(
        True, "\"mm-hmm\", \"yeah\" over a reply let it go on; off: any speech interrupts")
    overlap_max_ms: int = setting(
        1200, "Speech over a reply this long interrupts it, whatever its words")
    duck_db: float = setting(
        -10.0, "The reply's level while the user talks over it, undecided (dB; 0: unchanged)")


@dataclass
class SttSettings:
    backend: str = setting("faster-whisper", "Speech-to-text backend")
    # Or a model name when the operator has internet.
    model: str = setting("tiny.en", "Whisper model: tiny.en, base, small, or a CTranslate2 folder")
    device: str = setting("cpu", "cpu, cuda or cuda:N")
    compute_type: str = setting(
        "int8", "CTranslate2 compute type: int8 on a CPU; float16 or int8_float16 on a GPU")
    # tiny.en on the 2-core VM: one thread 33/90/191 ms for 2/6/11 s of speech, two
    # 38/120/224 ms; beside a busy process 31/133/239 against 119/172/233.
    cpu_threads: int = setting(1, "Threads Whisper uses on a CPU")
    language: str = setting("en", "Spoken language; empty: detect per turn (multilingual)")
    beam_size: int = setting(1, "Whisper beam size")
    # 30 is Whisper's fixed window; shorter is much faster on a CPU (3 s encodes in a
    # quarter of the time of 10 s), and the repeats short windows cause are cut.
    min_window_s: float = setting(
        3.0, "Whisper's encoder window fits the utterance, but is never shorter")


@dataclass
class NoiseSettings:
    # The figures behind the defaults: avatar_rtc/conversation/noise.py.
    enabled: bool = setting(
        True, "Utterances that are background noise or distant speech (a TV) get no reply")
    # A close talker is at -18 to -26 dBFS; a TV across the room at about -30.
    floor_dbfs: float = setting(
        -27.0, "Speech level (dBFS, RMS of the voiced part) an utterance needs")
    below_caller_db: float = setting(
        12.0, "Once the caller spoke: utterances this many dB below their level are dropped")
    marginal_db: float = setting(
        3.0, "Utterances less than this many dB above the needed level are marginal")
    max_no_speech_prob: float = setting(
        0.6, "Marginal utterances whose Whisper no-speech probability is above this are dropped")
    min_avg_logprob: float = setting(
        -1.5, "Utterances whose Whisper mean log probability is below this are dropped")
    marginal_avg_logprob: float = setting(
        -1.0, "Utterances whose Whisper mean log probability is below this are marginal")
    min_words: int = setting(1, "Words an utterance needs")
    marginal_min_words: int = setting(3, "Words a marginal utterance needs")


@dataclass
class ToolSettings:
    """One tool the model may call: a `[[llm.tools]]` table of the TOML file."""

    name: str = ""  # what the model calls it: letters, digits, _ and -
    description: str = ""  # what it does, for the model
    # Its arguments: a JSON schema of type "object".
    parameters: dict[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}})
    url: str = ""  # POSTed the arguments as JSON; answers JSON
    entry_point: str = ""  # or "module:function", sync or async, called with the arguments
    timeout_s: float = 5.0


TOOL_KEYS = ("name", "description", "parameters", "url", "entry_point", "timeout_s")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENTRY_POINT = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def tool_problems(tools: list[ToolSettings]) -> list[str]:
    """What is wrong with the declared tools, each naming the tool and its key."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        where = f"llm.tools[{i}]" + (f" ({tool.name})" if tool.name else "")
        if not _TOOL_NAME.fullmatch(tool.name):
            problems.append(f"{where}: name must be 1-64 letters, digits, _ or -")
        elif tool.name in seen:
            problems.append(f"{where}: name declared twice")
        seen.add(tool.name)
        if not tool.description.strip():
            problems.append(f"{where}: description is required (the model reads it)")
        if tool.parameters.get("type") != "object" or not isinstance(
                tool.parameters.get("properties", {}), dict):
            problems.append(f'{where}: parameters must be a JSON schema with "type" = "object"')
        if bool(tool.url) == bool(tool.entry_point):
            problems.append(f"{where}: set exactly one of url and entry_point")
        if tool.url and not tool.url.startswith(("http://", "https://")):
            problems.append(f"{where}: url must start with http:// or https://")
        if tool.entry_point and not _ENTRY_POINT.fullmatch(tool.entry_point):
            problems.append(f'{where}: entry_point must be "module:function"')
        if not 0 < tool.timeout_s <= 600:
            problems.append(f"{where}: timeout_s must be above 0 and at most 600")
    return problems


@dataclass
class LlmSettings:
    backend: str = setting(
        "llama-cpp", "llama-cpp, or openai (vLLM, llama.cpp server, any compatible API)")
    # The packaged models and their numbers: docs/models.md.
    model: str = setting(
        "", "llama-cpp: packaged model smollm2-135m or qwen2.5-0.5b (empty: smollm2-135m); "
            "openai: model name (empty: the server's first)")
    model_path: str = setting(
        "", "llama-cpp GGUF file; overrides llm.model")
    # q8_0 is converted once from the shipped Q4_1 into <storage.data_dir>/models and is
    # 1.6x faster per token on one thread.
    weights: str = setting("q8_0", "smollm2-135m's weights: q8_0 or q4_1")
    # One when that was faster lately, or while other calls are live (each model step
    # then runs on one thread).
    n_threads: int = setting(2, "Most threads for token generation")
    n_batch_threads: int = setting(2, "Threads for prompt evaluation")
    n_ctx: int = setting(2048, "Context window in tokens")
    base_url: str = setting("", "openai backend: the API's base URL")
    api_key: str = setting("none", "openai backend: API key (masked in /health)")
    max_tokens: int = setting(120, "Longest reply in tokens")
    # Small models forget the system prompt's "one or two sentences" a few turns in and
    # talk for half a minute.
    max_sentences: int = setting(3, "A reply stops after this many sentences; 0: no limit")
    temperature: float = setting(0.2, "Sampling temperature")
    seed: int = setting(0, "Sampling seed")
    system_prompt: str = setting(DEFAULT_SYSTEM_PROMPT, "The system prompt of every call")
    max_history_turns: int = setting(12, "Turns of the conversation kept in the prompt")
    request_timeout_s: float = setting(30.0, "openai backend: seconds per request")
    # Tried in order after base_url when a request fails before its first token.
    fallback_base_urls: list[str] = field(
        default_factory=list,
        metadata={"doc": "openai backend: more base URLs tried in order when one fails"})
    connect_timeout_s: float = setting(3.0, "openai backend: seconds to connect")
    # Prompt evaluation included: a long history on a busy server takes seconds.
    first_token_timeout_s: float = setting(
        15.0, "openai backend: seconds from the request to the first token")
    token_timeout_s: float = setting(
        10.0, "openai backend: longest wait between two tokens")
    # Only before the first token: a reply the caller heard part of is never asked again.
    retries: int = setting(2, "openai backend: retries of a request that failed before its "
                           "first token (each round tries every URL)")
    retry_backoff_s: float = setting(
        0.25, "openai backend: first wait before a retry; doubles each time, with jitter")
    # A list of tables, so TOML only (docs/tools.md).
    tools: list[ToolSettings] = field(
        default_factory=list,
        metadata={"doc": "Tools the model may call: [[llm.tools]] tables in the TOML file"})
    tool_filler: str = setting("One moment.", "Said while a tool runs; empty: nothing")
    max_tool_rounds: int = setting(
        3, "Rounds of tool calls in one reply; then the model must answer")


@dataclass
class TtsSettings:
    backend: str = setting("piper", "Text-to-speech of calls without a voice profile")
    # One that is not installed or has no weights is reported at startup and in /health.
    backends: list[str] = field(
        default_factory=list,
        metadata={"doc": "More backends loaded at startup for voice profiles (f5-tts, cosyvoice)"})
    voice: str = setting("joe-medium", "Piper voice: a packaged name or a .onnx path")
    speed: float = setting(1.0, "Speaking rate (0.25-4)")
    # A caller heard in a language the call's voice does not speak is answered by the
    # voice named here; with none, in text only (docs/languages.md).
    voices_by_language: list[str] = field(
        default_factory=list,
        metadata={"doc": "Voice per caller's language, as language=voice (zh=my-voice)"})
    # The LLM is held while the first chunk is synthesized.
    threads: int = setting(2, "Threads Piper uses")
    speak_ahead_s: float = setting(
        3.0, "Synthesize later chunks when less audio than this is left; 0: at once")
    device: str = setting("cuda", "f5-tts and cosyvoice: cuda, cuda:N or cpu")
    profile_cache_size: int = setting(
        32, "Prepared reference clips kept per cloning backend")
    crossfade_ms: float = setting(
        150.0, "Overlap where two synthesized pieces of a sentence meet")
    seed: int = setting(0, "Noise seed of the cloning backends (repeatable output)")
    # Empty F5-TTS paths: the folders tools/download-models writes under
    # <storage.data_dir>/models.
    f5_model: str = setting("F5TTS_v1_Base", "F5-TTS config shipped with f5-tts, or a .yaml")
    f5_ckpt: str = setting("", "F5-TTS checkpoint (.safetensors or .pt)")
    f5_vocab: str = setting("", "F5-TTS vocab.txt; empty: the one shipped with f5-tts")
    f5_vocoder: str = setting("", "F5-TTS Vocos folder (config.yaml, pytorch_model.bin)")
    f5_nfe_step: int = setting(32, "F5-TTS flow-matching steps: 16 is ~2x faster, rougher")
    f5_cfg_strength: float = setting(2.0, "F5-TTS classifier-free guidance strength")
    f5_sway_sampling: float = setting(-1.0, "F5-TTS sway sampling coefficient")
    # CosyVoice's code comes from the cosyvoice-minicpmo package (tools/setup --gpu).
    cosyvoice_model: str = setting("", "CosyVoice2 model folder (CosyVoice2-0.5B)")
    cosyvoice_fp16: bool = setting(True, "CosyVoice in half precision")
    cosyvoice_stream: bool = setting(True, "CosyVoice streams audio as it is synthesized")
    # Short, so the first audio comes soon (Piper: ~40 ms + ~3 ms a character; the LLM
    # ~16 ms a token), e.g. "The sun is" + "about 150 million kilometres away."
    first_chunk_min_chars: int = setting(
        8, "The reply's first chunk may end at a clause boundary once this long")
    first_chunk_max_chars: int = setting(
        16, "The first chunk is cut at a space past this length")
    clause_min_chars: int = setting(
        40, "Later chunks end at clause boundaries once this long")


@dataclass
class EchoSettings:
    # On by default: the browser's own canceller stays on too, and with no echo to
    # remove this one passes the audio through (docs/echo.md).
    enabled: bool = setting(
        True, "Cancel the agent's echo in the user's audio; /offer's echo_cancellation overrides")
    gate: bool = setting(True, "Mute what echo the canceller leaves while the agent speaks")
    max_delay_ms: int = setting(
        1000, "Longest round trip from sending the agent's audio to hearing its echo")


@dataclass
class StorageSettings:
    data_dir: str = setting("data", "Folder of the database, recordings and models")
    database_url: str = setting(
        "", "sqlite:///path or postgresql://user:password@host:port/db (the postgres extra); "
        "empty: SQLite, avatar_rtc.db in data_dir")

    @property
    def root(self) -> Path:
        """data_dir, absolute: the folder stored paths (recordings, clips) are relative to."""
        return Path(self.data_dir).resolve()


@dataclass
class RecordingSettings:
    enabled: bool = setting(True, "Record both sides of every call")
    # Their rows say so.
    retention_days: float = setting(
        30.0, "Recordings older than this are deleted; 0: kept forever")
    max_disk_mb: float = setting(
        2048.0, "Total size of all recordings; the oldest go first above it; 0: no cap")
    bitrate_kbps: int = setting(24, "Ogg/Opus bitrate per track")


@dataclass
class AdminSettings:
    # Empty: the server makes one and keeps it in <storage.data_dir>/admin-token.
    token: str = setting(
        "", "Bearer token of /admin/api; empty: the one in <data_dir>/admin-token (masked)")
    # Behind a reverse proxy on the same host every request comes from loopback, so
    # this mode refuses requests carrying a proxy's forwarding headers.
    loopback_only: bool = setting(
        False, "With no admin.token: loopback clients need no token, others are refused")
    max_upload_bytes: int = setting(20 * 1024 * 1024, "Largest voice clip upload")
    write_rate_per_min: int = setting(
        30, "Write requests (POST/PATCH/DELETE) per client per minute; 0: no limit")


@dataclass
class GpuSettings:
    # Used memory comes from NVML, or torch when loaded. Without a GPU it never refuses.
    max_memory_fraction: float = setting(
        0.9, "/offer answers 503 above this fraction of GPU memory used; 1: never")
    device_index: int = setting(0, "The GPU whose memory admission watches")


@dataclass
class LogSettings:
    level: str = setting("INFO", "DEBUG, INFO, WARNING or ERROR")
    json: bool = setting(False, "One JSON object per log line")


@dataclass
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    ice: IceSettings = field(default_factory=IceSettings)
    vad: VadSettings = field(default_factory=VadSettings)
    turn: TurnSettings = field(default_factory=TurnSettings)
    stt: SttSettings = field(default_factory=SttSettings)
    noise: NoiseSettings = field(default_factory=NoiseSettings)
    llm: LlmSettings = field(default_factory=LlmSettings)
    tts: TtsSettings = field(default_factory=TtsSettings)
    echo: EchoSettings = field(default_factory=EchoSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    gpu: GpuSettings = field(default_factory=GpuSettings)
    log: LogSettings = field(default_factory=LogSettings)

    def validate(self) -> Settings:
        checks: list[tuple[bool, str]] = [
            (0 < self.server.port < 65536, "server.port must be 1-65535"),
            (self.server.max_calls >= 1, "server.max_calls must be >= 1"),
            (0 <= self.server.ready_headroom < self.server.max_calls,
             "server.ready_headroom must be 0 to max_calls - 1"),
            (self.server.max_body_bytes >= 1024, "server.max_body_bytes must be >= 1024"),
            (self.server.connect_timeout_s >= 0, "server.connect_timeout_s must be >= 0"),
            (self.server.keepalive_timeout_s > 0, "server.keepalive_timeout_s must be > 0"),
            (self.server.max_pending_offers >= 0, "server.max_pending_offers must be >= 0"),
            (self.server.max_pending_per_address >= 0,
             "server.max_pending_per_address must be >= 0"),
            (self.server.offer_rate_per_min >= 0, "server.offer_rate_per_min must be >= 0"),
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
            (self.turn.model in ("smart-turn", "none"), "turn.model: smart-turn or none"),
            (0.0 <= self.turn.incomplete_threshold <= self.turn.complete_threshold <= 1.0,
             "turn thresholds: 0 <= incomplete_threshold <= complete_threshold <= 1"),
            (self.turn.incomplete_end_silence_ms >= self.vad.end_silence_ms,
             "turn.incomplete_end_silence_ms must be >= vad.end_silence_ms"),
            (self.turn.overlap_max_ms >= self.vad.min_speech_ms,
             "turn.overlap_max_ms must be >= vad.min_speech_ms"),
            (-60.0 <= self.turn.duck_db <= 0.0, "turn.duck_db must be -60..0"),
            (0.0 <= self.noise.max_no_speech_prob <= 1.0,
             "noise.max_no_speech_prob must be 0-1"),
            (self.noise.min_avg_logprob <= self.noise.marginal_avg_logprob <= 0.0,
             "noise: min_avg_logprob <= marginal_avg_logprob <= 0"),
            (self.noise.below_caller_db >= 0 and self.noise.marginal_db >= 0,
             "noise.below_caller_db and noise.marginal_db must be >= 0"),
            (1 <= self.noise.min_words <= self.noise.marginal_min_words,
             "noise: 1 <= min_words <= marginal_min_words"),
            (self.stt.language != "" or not self.stt.model.endswith(".en"),
             f"stt.language is empty (detect the language) but stt.model={self.stt.model} "
             "is English-only: use stt.model=base (or another multilingual model)"),
            (_voice_map_ok(self.tts.voices_by_language),
             "tts.voices_by_language: each entry language=voice (zh=my-voice)"),
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
            (self.llm.backend != "llama-cpp" or bool(self.llm.model_path)
             or self.llm.model in ("", *PACKAGED_LLMS),
             f"llm.model: one of {', '.join(PACKAGED_LLMS)} with llm.backend=llama-cpp "
             "(or set llm.model_path)"),
            (self.llm.max_tokens >= 1, "llm.max_tokens must be >= 1"),
            (self.llm.max_sentences >= 0, "llm.max_sentences must be >= 0"),
            (self.llm.retries >= 0, "llm.retries must be >= 0"),
            (self.llm.retry_backoff_s >= 0, "llm.retry_backoff_s must be >= 0"),
            (min(self.llm.connect_timeout_s, self.llm.first_token_timeout_s,
                 self.llm.token_timeout_s) > 0, "llm timeouts must be > 0"),
            (self.server.drain_timeout_s >= 0, "server.drain_timeout_s must be >= 0"),
            (self.llm.max_tool_rounds >= 1, "llm.max_tool_rounds must be >= 1"),
            *((False, problem) for problem in tool_problems(self.llm.tools)),
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
            (100 <= self.echo.max_delay_ms <= 2000, "echo.max_delay_ms must be 100-2000"),
            (self.recording.retention_days >= 0, "recording.retention_days must be >= 0"),
            (self.recording.max_disk_mb >= 0, "recording.max_disk_mb must be >= 0"),
            (6 <= self.recording.bitrate_kbps <= 256, "recording.bitrate_kbps must be 6-256"),
            (bool(self.server.tls_cert) == bool(self.server.tls_key),
             "server.tls_cert and server.tls_key must be set together"),
            (self.admin.max_upload_bytes >= 1024, "admin.max_upload_bytes must be >= 1024"),
            (self.admin.write_rate_per_min >= 0, "admin.write_rate_per_min must be >= 0"),
            (not (self.ice.turn_secret and (self.ice.turn_username or self.ice.turn_credential)),
             "ice.turn_secret and ice.turn_username/turn_credential exclude each other"),
            (not self.ice.turn_secret or 60 <= self.ice.turn_ttl_s <= 7 * 86400,
             "ice.turn_ttl_s must be 60-604800"),
            (not self.ice.relay_only or bool(self.ice.turn_urls),
             "ice.relay_only needs ice.turn_urls"),
            (self.log.level.upper() in _LOG_LEVELS, f"log.level: one of {sorted(_LOG_LEVELS)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise SettingsError(message)
        return self


_LOG_LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR"}

# The names of avatar_rtc/backends/llm_packages.py (settings never import backends).
PACKAGED_LLMS = ("smollm2-135m", "qwen2.5-0.5b")

STT_COMPUTE_TYPES = ("default", "auto", "int8", "int8_float32", "int8_float16",
                     "int8_bfloat16", "int16", "float16", "bfloat16", "float32")


def _voice_map_ok(entries: list[str]) -> bool:
    for entry in entries:
        code, sep, voice = entry.partition("=")
        if not (sep and code.strip().isalpha() and voice.strip()):
            return False
    return True


def _is_device(device: str) -> bool:
    kind, colon, index = device.partition(":")
    if kind == "cpu":
        return not colon
    return kind == "cuda" and (not colon or index.isdigit())
