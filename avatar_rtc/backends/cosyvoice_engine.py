"""CosyVoice2's own frontend and model classes, loaded from a model folder.

Imported only when the cosyvoice backend is configured: it needs torch and the
`cosyvoice` package (from `cosyvoice-minicpmo`, see docs/gpu.md). That package's
`CosyVoice2` class loads no LLM (its users bring their own speech tokens) and its text
normalizer is cut out, so the pieces are assembled here as `CosyVoice2` assembles
them: the YAML built by hyperpyyaml, `CosyVoiceFrontEnd` for the prompt and the text,
`CosyVoice2Model` for LLM -> flow -> HiFT, with the LLM's weights loaded too.

`CosyVoice2Model.tts` runs the LLM on a thread of its own and has no way to stop it:
a closed stream left the thread writing speech tokens to the end of the sentence.
`StoppableModel` gives each LLM job a stop event, checked between two tokens, and
removes the stream's state once it ends.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import inflect
import numpy as np
import torch
from cosyvoice.cli.frontend import CosyVoiceFrontEnd
from cosyvoice.cli.model import CosyVoice2Model
from cosyvoice.utils.frontend_utils import spell_out_number
from hyperpyyaml import load_hyperpyyaml

JOIN_TIMEOUT_S = 30.0


class LlmStopped(Exception):
    """The LLM thread of a stream failed; raised on the model thread."""


@dataclass(eq=False)
class LlmJob:
    """One stream's LLM thread, as seen from the model thread."""

    stop: threading.Event
    limit: int | None = None  # speech tokens, then the sentence ends
    uuid: str | None = None
    tokens: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class StoppableLlm:
    """Wraps CosyVoice's Qwen2LM: a stopped job's token loop ends at the next token."""

    def __init__(self, llm: Any, local: threading.local) -> None:
        self.module = llm
        self._local = local

    def __getattr__(self, name: str) -> Any:
        return getattr(self.module, name)

    def inference(self, **kwargs: Any) -> Iterator[int]:
        job: LlmJob | None = getattr(self._local, "job", None)
        with closing(self.module.inference(**kwargs)) as tokens:
            for token in tokens:
                if job is not None:
                    if job.stop.is_set() or (job.limit is not None and job.tokens >= job.limit):
                        return
                    job.tokens += 1
                yield token


class StoppableModel(CosyVoice2Model):  # type: ignore[misc]
    """CosyVoice2Model whose LLM jobs stop when their stream is closed."""

    def __init__(self, llm: Any, flow: Any, hift: Any, fp16: bool) -> None:
        super().__init__(llm, flow, hift, fp16)
        self._local = threading.local()
        self.llm = StoppableLlm(llm, self._local)
        # The LLM job of a stream about to start, by the identity of its text tensor:
        # `tts` hands that very tensor to `llm_job` on the new thread.
        self.pending: dict[int, LlmJob] = {}

    def llm_job(self, text: Any, prompt_text: Any, llm_prompt_speech_token: Any,
                llm_embedding: Any, uuid: str) -> None:
        job = self.pending.pop(id(text), None) or LlmJob(threading.Event())
        job.uuid, job.thread = uuid, threading.current_thread()
        self._local.job = job
        try:
            super().llm_job(text, prompt_text, llm_prompt_speech_token, llm_embedding, uuid)
        except BaseException as exc:  # reported on the model thread
            job.error = exc
        finally:
            # Without it `tts` would wait for the LLM forever after an error.
            self.llm_end_dict[uuid] = True
            job.done.set()

    def end(self, job: LlmJob, text: Any) -> None:
        """Stops the stream's LLM thread and drops what `tts` kept for it."""
        job.stop.set()
        self.pending.pop(id(text), None)
        if job.uuid is None:
            return  # the stream closed before its LLM started
        if not job.done.wait(JOIN_TIMEOUT_S):
            raise LlmStopped(f"cosyvoice: the LLM thread did not stop in {JOIN_TIMEOUT_S} s")
        with self.lock:
            for state in (self.tts_speech_token_dict, self.llm_end_dict, self.hift_cache_dict):
                state.pop(job.uuid, None)


class CosyVoice2Engine:
    """A CosyVoice2 model folder loaded: frontend, LLM, flow and HiFT."""

    def __init__(self, model_dir: Path, *, fp16: bool) -> None:
        if not (model_dir / "cosyvoice2.yaml").is_file():
            raise FileNotFoundError(f"{model_dir / 'cosyvoice2.yaml'} not found")
        with open(model_dir / "cosyvoice2.yaml") as f:
            configs = load_hyperpyyaml(f, overrides={
                "qwen_pretrain_path": str(model_dir / "CosyVoice-BlankEN")})
        self.frontend = CosyVoiceFrontEnd(
            configs["get_tokenizer"], configs["feat_extractor"],
            str(model_dir / "campplus.onnx"), str(model_dir / "speech_tokenizer_v2.onnx"),
            "", configs["allowed_special"])
        self.fp16 = fp16 and torch.cuda.is_available()  # CosyVoice's own rule
        llm = configs["llm"]
        self.model = StoppableModel(llm, configs["flow"], configs["hift"], self.fp16)
        device = self.model.device
        llm.load_state_dict(torch.load(model_dir / "llm.pt", map_location=device), strict=True)
        llm.to(device).eval()
        if self.fp16:
            llm.half()
        self.model.load(str(model_dir / "llm.pt"), str(model_dir / "flow.pt"),
                        str(model_dir / "hift.pt"))
        self.sample_rate: int = int(configs["sample_rate"])
        self.device = str(device)
        self._numbers = inflect.engine()
        # Benchmarks only: random weights never write the end token, so a sentence is
        # held to about the real model's length.
        self.tokens_per_char: float | None = None

    def speaker(self, prompt_text: str, prompt_16k: np.ndarray) -> dict[str, Any]:
        """The prompt's tokens, speech tokens, mel and speaker embedding (once per
        profile)."""
        wave = torch.from_numpy(np.ascontiguousarray(prompt_16k, dtype=np.float32))[None]
        inputs: dict[str, Any] = self.frontend.frontend_zero_shot(
            "", prompt_text, wave, self.sample_rate, "")
        del inputs["text"], inputs["text_len"]
        return inputs

    def text_tokens(self, text: str) -> Any:
        text = spell_out_number(text.strip(), self._numbers)
        ids = self.frontend.tokenizer.encode(text, allowed_special=self.frontend.allowed_special)
        return torch.tensor([ids], dtype=torch.int32).to(self.frontend.device)

    def synthesize(self, text: str, speaker: dict[str, Any], stop: threading.Event, *,
                   stream: bool, speed: float = 1.0) -> Iterator[np.ndarray]:
        """Float32 audio pieces of `text` in the speaker's voice; closing the iterator
        (or setting `stop`) stops CosyVoice's LLM thread too."""
        tokens = self.text_tokens(text)
        job = LlmJob(stop)
        if self.tokens_per_char is not None:
            job.limit = max(1, round(len(text) * self.tokens_per_char))
        self.model.pending[id(tokens)] = job
        inputs = {**speaker, "text": tokens,
                  "text_len": torch.tensor([tokens.shape[1]], dtype=torch.int32)}
        outputs = self.model.tts(**inputs, stream=stream, speed=speed)
        try:
            for output in outputs:
                if job.error is not None:
                    break
                yield output["tts_speech"].detach().float().cpu().numpy().reshape(-1)
        finally:
            outputs.close()
            self.model.end(job, tokens)
        if job.error is not None:
            raise LlmStopped(f"cosyvoice LLM: {job.error}") from job.error
