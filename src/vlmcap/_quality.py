"""Caption quality flags: pure rules over captions and their finish reasons (no I/O).

Five flags, each a pure function:

- ``repetition`` (:func:`repetition`): the caption holds a loop, some n-gram of 1 to
  ``repeat_max_ngram`` words repeated back to back at least ``repeat_min_times`` times
  ("circle circle circle circle", "a red car a red car a red car a red car").
- ``truncated`` (:func:`truncated`): the caption hit the token limit (finish reason
  ``"length"``).
- ``too_short`` and ``too_long`` (:func:`length_outliers`): the caption's length in words is an
  outlier of the run's own length distribution by the *modified z-score* of Iglewicz and
  Hoaglin: ``z = 0.6745 * (words - median) / MAD`` (``MAD``: the median absolute deviation; when
  it is 0, ``1.2533 * mean absolute deviation`` stands in, and when that is 0 too every length is
  equal and nothing is flagged). ``z < -length_z`` is ``too_short``, ``z > length_z`` is
  ``too_long`` (default 3.5, the authors' cut-off). A run of fewer than ``length_min_rows``
  captions flags no lengths: a distribution of a handful says nothing.
- ``near_duplicate`` (:func:`near_duplicates`): the caption's word ``shingle``-grams overlap
  another window's of the *same file* with a Jaccard index of at least ``duplicate_jaccard``
  (a caption shorter than a shingle is compared by its words).

The rules that look at one caption (``repetition``, ``truncated``) are :data:`ROW_FLAGS`; the
others compare captions (:data:`RELATIONAL_FLAGS`). Thresholds live in :class:`QualitySettings`
(``VllmConfig.quality``).
"""

import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from vlmcap._errors import ConfigError


if TYPE_CHECKING:
    from vlmcap._records import VllmSamplingConfig


REPETITION = "repetition"
TOO_SHORT = "too_short"
TOO_LONG = "too_long"
NEAR_DUPLICATE = "near_duplicate"
TRUNCATED = "truncated"
FLAGS: tuple[str, ...] = (REPETITION, TOO_SHORT, TOO_LONG, NEAR_DUPLICATE, TRUNCATED)
"""Every flag, in the order flags are listed."""
ROW_FLAGS: tuple[str, ...] = (REPETITION, TRUNCATED)
"""Flags of one caption alone: known when its row is written."""
RELATIONAL_FLAGS: tuple[str, ...] = (TOO_SHORT, TOO_LONG, NEAR_DUPLICATE)
"""Flags that compare a caption with others (the run's, the file's)."""

_MAD_SCALE = 0.6745
_MEAN_AD_SCALE = 1.253314
_WORD = re.compile(r"\w+", re.UNICODE)


def _flag_set(values: Iterable[str]) -> frozenset[str]:
    out = frozenset(str(v).strip() for v in values if str(v).strip())
    unknown = sorted(out - set(FLAGS))
    if unknown:
        raise ConfigError(f"unknown quality flag(s) {unknown}; known: {', '.join(FLAGS)}")
    return out


def _at_least(low: float) -> Any:
    def check(_inst: object, attribute: "attrs.Attribute[Any]", value: float) -> None:
        if not value >= low:
            raise ConfigError(f"quality.{attribute.name} must be >= {low}, got {value!r}")

    return check


def _fraction(_inst: object, attribute: "attrs.Attribute[Any]", value: float) -> None:
    if not 0 < value <= 1:
        raise ConfigError(f"quality.{attribute.name} must be in (0, 1], got {value!r}")


@attrs.frozen
class QualitySettings:
    """Thresholds of the quality rules, the flags that reject a window, and the retry sampling.

    Not part of the settings fingerprint: flags label captions, they do not change them.
    """

    repeat_max_ngram: int = attrs.field(default=6, validator=_at_least(1))
    """Longest loop, in words, that ``repetition`` looks for."""
    repeat_min_times: int = attrs.field(default=4, validator=_at_least(2))
    """Back-to-back repeats of one n-gram that make a loop."""
    length_z: float = attrs.field(default=3.5, validator=_at_least(0))
    """Modified z-score beyond which a length is ``too_short``/``too_long``."""
    length_min_rows: int = attrs.field(default=8, validator=_at_least(2))
    """Fewest captions in a run before lengths are judged."""
    duplicate_jaccard: float = attrs.field(default=0.8, validator=_fraction)
    """Jaccard index of shingles at or above which two windows of a file are near duplicates."""
    shingle: int = attrs.field(default=3, validator=_at_least(1))
    """Words per shingle of ``near_duplicate``."""
    reject: frozenset[str] = attrs.field(default=frozenset(), converter=_flag_set)
    """Row flags (:data:`ROW_FLAGS`) that turn a window into an error row."""
    retry_temperature: float = attrs.field(default=0.7, validator=_at_least(0))
    """Sampling temperature (at least) of a ``--retry-errors`` run; see :func:`retry_sampling`."""
    retry_top_p: float = attrs.field(default=0.95, validator=_fraction)
    """Nucleus (at least) of a ``--retry-errors`` run, so that the temperature matters."""

    def __attrs_post_init__(self) -> None:
        """Only flags known when a row is written can reject it."""
        late = sorted(self.reject - set(ROW_FLAGS))
        if late:
            raise ConfigError(
                f"quality flag(s) {late} cannot reject a window: they compare captions and are "
                f"known only when the run ends; rejectable: {', '.join(ROW_FLAGS)}"
            )


def words(text: str | None) -> list[str]:
    """The caption's words, lower case (runs of word characters); none for ``None``."""
    return [w.lower() for w in _WORD.findall(text or "")]


def repetition(text: str | None, settings: QualitySettings | None = None) -> bool:
    """Whether the caption loops.

    True when some n-gram (1 to ``repeat_max_ngram`` words) repeats back to back at least
    ``repeat_min_times`` times.
    """
    s = settings or QualitySettings()
    w = words(text)
    times = s.repeat_min_times
    for n in range(1, s.repeat_max_ngram + 1):
        if n * times > len(w):
            break
        run = 1  # words w[i] equal to w[i - n], back to back, ending at i
        for i in range(n, len(w)):
            run = run + 1 if w[i] == w[i - n] else 0
            if run >= n * (times - 1):
                return True
    return False


def truncated(finish_reason: str | None) -> bool:
    """True when generation stopped at the token limit."""
    return finish_reason == "length"


def row_flags(
    text: str | None, finish_reason: str | None, settings: QualitySettings | None = None
) -> tuple[str, ...]:
    """The flags of one caption alone (:data:`ROW_FLAGS`), in :data:`FLAGS` order."""
    if text is None:
        return ()
    found = {REPETITION: repetition(text, settings), TRUNCATED: truncated(finish_reason)}
    return tuple(f for f in FLAGS if found.get(f))


def rejected_by(flags: Iterable[str], settings: QualitySettings) -> tuple[str, ...]:
    """The flags among ``flags`` that ``settings.reject`` turns into an error row."""
    return tuple(f for f in FLAGS if f in settings.reject and f in set(flags))


REJECTION = "QualityFlag"
"""How the error of a rejected window starts (:func:`rejection_error`)."""


def rejection_error(flags: Sequence[str]) -> str:
    """The error text of a rejected window (it names the flags)."""
    return (
        f"{REJECTION} ({','.join(flags)}): the caption was flagged {' and '.join(flags)} "
        "and rejected (--reject-flags); --retry-errors captions it again"
    )


def modified_z(values: Sequence[float]) -> list[float]:
    """The modified z-score of each value (0 for every value when all are equal)."""
    if not values:
        return []
    centre = float(statistics.median(values))
    deviations = [abs(v - centre) for v in values]
    mad = float(statistics.median(deviations))
    if mad > 0:
        return [_MAD_SCALE * (v - centre) / mad for v in values]
    mean_ad = statistics.fmean(deviations)
    if mean_ad == 0:
        return [0.0] * len(values)
    return [(v - centre) / (_MEAN_AD_SCALE * mean_ad) for v in values]


def length_outliers(
    lengths: Sequence[int], settings: QualitySettings | None = None
) -> list[tuple[str, ...]]:
    """``too_short``/``too_long`` of each length against the others (see the module doc)."""
    s = settings or QualitySettings()
    if len(lengths) < s.length_min_rows:
        return [() for _ in lengths]
    return [
        (TOO_SHORT,) if z < -s.length_z else (TOO_LONG,) if z > s.length_z else ()
        for z in modified_z([float(n) for n in lengths])
    ]


def shingles(text: str | None, size: int) -> frozenset[tuple[str, ...]]:
    """The caption's word ``size``-grams (its words alone when it is shorter than one)."""
    w = words(text)
    if len(w) < size:
        return frozenset((x,) for x in w)
    return frozenset(tuple(w[i : i + size]) for i in range(len(w) - size + 1))


def jaccard(a: frozenset[Any], b: frozenset[Any]) -> float:
    """``|a & b| / |a | b|``; 0 when both are empty."""
    union = len(a | b)
    return len(a & b) / union if union else 0.0


def near_duplicates(
    captions: Sequence[str | None], settings: QualitySettings | None = None
) -> list[bool]:
    """For each caption of one file, whether another caption of the file is a near duplicate.

    ``None`` (an error row) and empty captions are never duplicates. Symmetric: the flags do not
    depend on the windows' order.
    """
    s = settings or QualitySettings()
    sets = [shingles(c, s.shingle) for c in captions]
    out = [False] * len(sets)
    for i in range(len(sets)):
        for j in range(i + 1, len(sets)):
            if sets[i] and sets[j] and jaccard(sets[i], sets[j]) >= s.duplicate_jaccard:
                out[i] = out[j] = True
    return out


@attrs.frozen
class Captioned:
    """What the rules need of one row: where it is, its caption, finish reason and row flags.

    ``flags`` are the row flags as stored (a rejected row keeps them though its caption is
    gone); the rules add the flags they find in the caption with this run's thresholds (a row
    written before flags existed stores none).
    """

    source: str
    window_index: int
    caption: str | None
    finish_reason: str | None
    flags: tuple[str, ...] | None = None


@attrs.frozen
class _Seen:
    source: str
    window_index: int
    words: int | None
    """Caption length in words; ``None`` for a row without a caption."""
    flags: frozenset[str]


@attrs.define
class QualityTally:
    """Collects a run's rows one at a time and flags them all at the end (mutable).

    Holds a few numbers per row, and the captions of the files not yet ended: call
    :meth:`end_file` once a file's rows are all added (the job does) to drop its captions.
    """

    settings: QualitySettings = attrs.field(factory=QualitySettings)
    _seen: list[_Seen] = attrs.field(factory=list)
    _open: dict[str, list[tuple[int, str]]] = attrs.field(factory=dict)
    """Per file not yet ended: (row position, caption) of its captioned rows."""

    def add(self, row: Captioned) -> None:
        """Add one row."""
        own = {*(row.flags or ()), *row_flags(row.caption, row.finish_reason, self.settings)}
        n = None if row.caption is None else len(words(row.caption))
        self._seen.append(_Seen(row.source, row.window_index, n, frozenset(own)))
        if row.caption is not None:
            self._open.setdefault(row.source, []).append((len(self._seen) - 1, row.caption))

    def end_file(self, source: str) -> None:
        """Flag the near duplicates among ``source``'s rows and forget its captions."""
        members = self._open.pop(source, [])
        dup = near_duplicates([c for _i, c in members], self.settings)
        for (i, _c), is_dup in zip(members, dup, strict=True):
            if is_dup:
                self._seen[i] = attrs.evolve(
                    self._seen[i], flags=self._seen[i].flags | {NEAR_DUPLICATE}
                )

    def flags(self) -> list[tuple[str, ...]]:
        """Every flag of every row added, in order (ends every open file first)."""
        for source in list(self._open):
            self.end_file(source)
        lengths = [(i, r.words) for i, r in enumerate(self._seen) if r.words is not None]
        found = [set(r.flags) for r in self._seen]
        for (i, _n), extra in zip(
            lengths, length_outliers([n for _i, n in lengths], self.settings), strict=True
        ):
            found[i].update(extra)
        return [tuple(f for f in FLAGS if f in fl) for fl in found]

    def report(self) -> dict[str, Any]:
        """The run's quality file (see :func:`quality_report`)."""
        flags = self.flags()
        s = self.settings
        counts = dict.fromkeys(FLAGS, 0)
        for fl in flags:
            for f in fl:
                counts[f] += 1
        lengths = [r.words for r in self._seen if r.words is not None]
        return {
            "rows": len(self._seen),
            "captioned": len(lengths),
            "flag_counts": counts,
            "flagged_rows": sum(1 for fl in flags if fl),
            "length_words": length_distribution(lengths),
            "rules": {
                "repetition": f"an n-gram of 1-{s.repeat_max_ngram} words repeated back to back "
                f">= {s.repeat_min_times} times",
                "too_short/too_long": f"modified z-score of the length in words beyond "
                f"+-{s.length_z} (median and MAD of the run; judged from {s.length_min_rows} "
                "captions up)",
                "near_duplicate": f"Jaccard of word {s.shingle}-shingles >= "
                f"{s.duplicate_jaccard} with another window of the same file",
                "truncated": "finish_reason is length (the token limit)",
            },
            "settings": {
                k: sorted(v) if isinstance(v, frozenset) else v
                for k, v in attrs.asdict(s).items()
            },
            "windows": [
                {"source": r.source, "window_index": r.window_index, "flags": list(fl)}
                for r, fl in zip(self._seen, flags, strict=True)
                if fl
            ],
        }


def all_flags(
    rows: Sequence[Captioned], settings: QualitySettings | None = None
) -> list[tuple[str, ...]]:
    """Every flag of every row, in :data:`FLAGS` order.

    A row without a caption keeps its row flags only. Lengths are judged over every captioned
    row given (the run); near duplicates among the rows of the same ``source``.
    """
    tally = QualityTally(settings or QualitySettings())
    for row in rows:
        tally.add(row)
    return tally.flags()


def _quantile(sorted_values: Sequence[int], q: float) -> float:
    """Linear-interpolation quantile of sorted values."""
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def length_distribution(lengths: Sequence[int]) -> dict[str, float | int | None]:
    """Count, min, quantiles, max, mean, median and MAD of caption lengths in words."""
    if not lengths:
        return {"count": 0}
    v = sorted(lengths)
    centre = float(statistics.median(v))
    return {
        "count": len(v),
        "min": v[0],
        "p05": _quantile(v, 0.05),
        "p25": _quantile(v, 0.25),
        "median": centre,
        "p75": _quantile(v, 0.75),
        "p95": _quantile(v, 0.95),
        "max": v[-1],
        "mean": statistics.fmean(v),
        "mad": float(statistics.median(abs(x - centre) for x in v)),
    }


def quality_report(
    rows: Sequence[Captioned], settings: QualitySettings | None = None
) -> dict[str, Any]:
    """The run's quality file: counts per flag, the length distribution, the flagged windows.

    JSON-able; ``windows`` lists every flagged window (source, window index, flags) in the
    order given.
    """
    tally = QualityTally(settings or QualitySettings())
    for row in rows:
        tally.add(row)
    return tally.report()


def retry_sampling(
    sampling: "VllmSamplingConfig", settings: QualitySettings
) -> "VllmSamplingConfig":
    """The sampling of a ``--retry-errors`` run: a temperature bump, with a fresh seed.

    The temperature becomes at least ``retry_temperature`` and top-p at least ``retry_top_p``
    (the default near-greedy top-p of 0.001 would make any temperature moot), with no fixed
    seed, so a window that looped or was cut off is drawn again rather than decoded the same
    way. The fingerprint keeps the run's own sampling: retried rows replace the rows they redo.
    """
    return attrs.evolve(
        sampling,
        temperature=max(sampling.temperature, settings.retry_temperature),
        top_p=max(sampling.top_p, settings.retry_top_p),
        seed=None,
    )


def counts_line(counts: Mapping[str, int]) -> str:
    """``"repetition 8, too_short 0, ..."`` in :data:`FLAGS` order."""
    return ", ".join(f"{f} {counts.get(f, 0)}" for f in FLAGS)
