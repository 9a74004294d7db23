"""Chart and README table from results JSONs of ``bench_throughput``.

    python -m benchmarks.report [RESULTS.json ...]   # default: the newest W1 results file

writes ``benchmarks/results/<name>.png`` per file and replaces the tables between the
``<!-- perf-table -->`` markers in README.md (one table per file, each run's ratios to its own
``naive_generate``).
"""

import json
import sys
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
START, END = "<!-- perf-table:start -->", "<!-- perf-table:end -->"


def latest(workload: str = "W1") -> Path:
    """The newest results file of ``workload`` that has every headline mode."""
    need = {"naive_generate", "vlmcap", "vlmcap_two_stage"}
    files = sorted(RESULTS.glob(f"*-{workload}-*.json"))
    full = [f for f in files if need <= set(json.loads(f.read_text())["modes"])]
    if not full:
        msg = f"no complete {workload} results in {RESULTS}"
        raise SystemExit(msg)
    return full[-1]


TARGETS = (
    ("vlmcap_over_text_only_sol", "vlmcap / text_only_sol"),
    ("vlmcap_over_best_peer", "vlmcap / best peer"),
    ("vlmcap_over_naive_generate", "vlmcap / naive_generate"),
    ("vlmcap_two_stage_over_vlmcap", "vlmcap_two_stage / vlmcap"),
    ("naive_two_stage_aligned_over_naive_two_stage", "aligned / plain two-stage layout"),
    ("runtime_checks_fraction_of_wall", "runtime checks, fraction of vlmcap's wall"),
)


def table(doc: dict[str, Any]) -> str:
    """A markdown table of the modes, as ratios to naive_generate of the same run."""
    w = doc["workload"]
    lines = [
        (
            f"{doc['gpu']}, vLLM {doc['vllm_version']}, {doc['date'][:10]}; workload "
            f"{w['name']}: {w['clips']} clips of {w['frames']} frames at "
            f"{w['height']}x{w['width']}, {w.get('prompt_tokens_per_clip', '?')} prompt and "
            f"{w['output_tokens']} output tokens per clip (per stage), one process"
            f"{' (' + doc['label'] + ')' if doc.get('label') else ''}."
        ),
        "",
        (
            "| mode | clips/s | ratio to naive_generate | output tok/s | CPU cores busy "
            "| requests with the whole video from the prefix cache |"
        ),
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in doc["modes"].items():
        ratio = m.get("ratio_to_naive_generate", float("nan"))
        cores = m.get("cpu_cores_busy", float("nan"))
        reused = m.get("requests_video_from_prefix_cache", "")
        lines.append(
            f"| {name} | {m['clips_per_s']:.2f} | {ratio:.2f}x | {m['output_tokens_per_s']:,.0f} "
            f"| {cores:.1f} | {reused} |"
        )
    d = doc.get("diagnostics", {})
    got = [f"{label} **{d[key]:.3f}**" for key, label in TARGETS if key in d]
    if got:
        lines += ["", "Ratios: " + "; ".join(got) + "."]
    return "\n".join(lines)


def chart(doc: dict[str, Any], path: Path) -> None:
    """A bar chart of clips/s per mode."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    names = list(doc["modes"])
    values = [doc["modes"][n]["clips_per_s"] for n in names]
    fig, ax = plt.subplots(figsize=(9, 4))
    bars = ax.barh(names[::-1], values[::-1], color="#4472c4")
    ax.bar_label(bars, fmt="%.2f")
    ax.set_xlabel("clips/s (higher is better)")
    ax.set_title(f"{doc['workload']['name']} on {doc['gpu']}, vLLM {doc['vllm_version']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str]) -> None:
    """Write the charts and update README.md."""
    sources = [Path(a).resolve() for a in argv] or [latest().resolve()]
    bodies = []
    for src in sources:
        doc = json.loads(src.read_text())
        png = src.with_suffix(".png")
        chart(doc, png)
        source = f"(source: `{src.relative_to(ROOT)}`)"
        bodies.append(f"{table(doc)}\n\n![modes]({png.relative_to(ROOT)}) {source}")
        print(png)
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        body = "\n\n".join(bodies)
        readme.write_text(f"{head}{START}\n{body}\n{END}{tail}")


if __name__ == "__main__":
    main(sys.argv[1:])
