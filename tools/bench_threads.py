"""How llama.cpp's token time depends on its thread count when other work holds cores.

Generates with the packaged SmolLM2 on 2 threads, on 1, and on ThreadChoice's pick
(what the server does), first on an otherwise idle machine, then beside 1..N processes
that each keep a core busy, and prints per-token p50/p90/mean and the process's CPU per
token. The host's steal share during each run is printed beside it: on a VM it moves
the figures as much as the busy processes do.

    .venv/bin/python tools/bench_threads.py              # idle, beside 1 and beside 2
    .venv/bin/python tools/bench_threads.py --busy 0 1 --tokens 200
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cpu_times, steal_share  # tools/bench.py, beside this script

from avatar_rtc.backends.smollm2 import packaged_model
from avatar_rtc.backends.thread_choice import ThreadChoice


def _spin() -> None:
    while True:
        pass


def _run(llama: Any, tokens: int, pick: Callable[[], int],
         record: Callable[[int, float], None]) -> tuple[list[float], float, list[int]]:
    prompt = llama.tokenize(b"Tell me a long story about a dragon and a knight.")
    llama.reset()
    llama.eval(prompt)
    times: list[float] = []
    picks: list[int] = []
    cpu = time.process_time()
    for i in range(tokens):
        threads = pick()
        llama._ctx.set_n_threads(threads, threads)
        started = time.perf_counter()
        llama.eval([1000 + i % 500])
        elapsed = time.perf_counter() - started
        record(threads, elapsed)
        times.append(elapsed * 1000)
        picks.append(threads)
    return times, (time.process_time() - cpu) * 1000 / tokens, picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2],
                        help="processes keeping a core busy, one run each")
    parser.add_argument("--tokens", type=int, default=120)
    args = parser.parse_args()
    from llama_cpp import Llama

    llama = Llama(model_path=str(packaged_model()), n_threads=2, n_threads_batch=2,
                  n_ctx=1024, verbose=False)
    for busy in args.busy:
        spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
        time.sleep(0.5)
        try:
            for label in ("2 threads", "1 thread", "ThreadChoice"):
                choice = ThreadChoice(2)
                fixed = {"2 threads": 2, "1 thread": 1}.get(label)
                pick = (lambda f=fixed: f) if fixed else choice.pick
                host = cpu_times()
                times, cpu, picks = _run(llama, args.tokens, pick, choice.record)
                q = statistics.quantiles(times, n=10)
                share = picks.count(1) / len(picks)
                steal = steal_share(host, cpu_times()) or 0.0
                print(f"beside {busy} busy: {label:12s} per token p50 {q[4]:6.1f} "
                      f"p90 {q[8]:6.1f} mean {statistics.fmean(times):6.1f} ms, "
                      f"CPU {cpu:5.1f} ms; one thread {share:4.0%}; "
                      f"host steal {steal:.0%}", flush=True)
        finally:
            for p in spinners:
                p.kill()


if __name__ == "__main__":
    main()
