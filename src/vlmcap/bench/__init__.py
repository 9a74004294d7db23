"""GPU throughput benchmark of the ways to drive vLLM for video captioning (``vlmcap bench``).

Runs naive ``LLM.generate``, cosmos-curate's one-admission in-flight loop, vlmcap (one and two
stages), naive two stages and a text-only speed-of-light in one engine and one run, on the real
Qwen2.5-VL-7B shape with ``load_format="dummy"`` (or the tiny checkpoint on CPU), and writes one
JSON per run. See ``benchmarks/README.md``.
"""

from vlmcap.bench._harness import MODES as MODES, WORKLOADS as WORKLOADS, main as main


__all__ = ["MODES", "WORKLOADS", "main"]
