"""Chart and README table from a results JSON of ``bench_throughput``.

    python -m benchmarks.report [RESULTS.json]   # default: the newest W1 file in benchmarks/results

writes ``benchmarks/results/<name>.png`` and replaces the table between the
``<!-- perf-table -->`` markers in README.md.
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


def table(doc: dict[str, Any]) -> str:
    """A markdown table of the modes, as ratios to naive_generate of the same run."""
    w = doc["workload"]
    lines = [
        (
            f"{doc['gpu']}, vLLM {doc['vllm_version']}, {doc['date'][:10]}; workload "
            f"{w['name']}: {w['clips']} clips of {w['frames']} frames at "
            f"{w['height']}x{w['width']}, {w.get('prompt_tokens_per_clip', '?')} prompt and "
            f"{w['output_tokens']} output tokens per clip (per stage), one engine, one run."
        ),
        "",
        "| mode | clips/s | ratio to naive_generate | output tok/s |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, m in doc["modes"].items():
        ratio = m.get("ratio_to_naive_generate", float("nan"))
        lines.append(
            f"| {name} | {m['clips_per_s']:.2f} | {ratio:.2f}x | {m['output_tokens_per_s']:,.0f} |"
        )
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
    """Write the chart and update README.md."""
    src = (Path(argv[0]) if argv else latest()).resolve()
    doc = json.loads(src.read_text())
    png = src.with_suffix(".png")
    chart(doc, png)
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        source = f"(source: `{src.relative_to(ROOT)}`)"
        body = f"{table(doc)}\n\n![modes]({png.relative_to(ROOT)}) {source}"
        readme.write_text(f"{head}{START}\n{body}\n{END}{tail}")
    print(png)


if __name__ == "__main__":
    main(sys.argv[1:])
