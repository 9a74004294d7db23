"""What the conformance checks raise and what :func:`~vlmcap.testing.check_plugin` returns."""

import unittest

import attrs

from vlmcap.testing._contracts import CONTRACTS


class ContractViolation(AssertionError):  # noqa: N818 - names what was found, like Hypothesis' Flaky
    """A plugin broke one contract rule.

    An :class:`AssertionError`, so that a check run inside any test framework reads as a test
    failure.

    Attributes:
        contract_id: the rule, e.g. ``"C-REFINE-002"`` (see ``contracts/README.md``).
        message: what went wrong and how to fix it.
    """

    def __init__(self, contract_id: str, message: str) -> None:
        self.contract_id = contract_id
        self.message = message
        super().__init__(f"[{contract_id}] {message}")


class CheckSkipped(unittest.SkipTest):
    """A check that does not apply, because a rule it depends on is already broken.

    A :class:`unittest.SkipTest`, so that pytest reports it as skipped without the checks
    importing pytest.
    """


@attrs.frozen
class ContractFailure:
    """One failed check."""

    contract_id: str
    """The rule that was broken, e.g. ``"C-INPUT-003"``."""
    check: str
    """The check that found it, e.g. ``"check_input_modality_keys"``."""
    message: str
    """What went wrong, on which input, and what to change."""

    @property
    def rule(self) -> str:
        """The rule's text, from the contract table."""
        contract = CONTRACTS.get(self.contract_id)
        return contract.rule if contract is not None else ""

    def format(self) -> str:
        """One line per failure: ``FAIL <ID> <check>: <message>``."""
        return f"FAIL {self.contract_id} {self.check}: {self.message}"


@attrs.frozen
class SkippedCheck:
    """A check that did not apply (a rule it depends on is broken, see the failures)."""

    check: str
    reason: str


@attrs.frozen
class ConformanceReport:
    """The outcome of :func:`~vlmcap.testing.check_plugin`: every failure, not just the first."""

    plugin: str
    """``module:Class`` of the plugin checked."""
    checks: tuple[str, ...]
    """Names of the checks that ran, in order."""
    failures: tuple[ContractFailure, ...] = ()
    skipped: tuple[SkippedCheck, ...] = ()
    checkpoint: str = ""
    """The checkpoint the checks loaded, its architecture, and whether it is the plugin's own."""

    @property
    def ok(self) -> bool:
        """True when no check failed."""
        return not self.failures

    @property
    def failed_contracts(self) -> frozenset[str]:
        """IDs of the broken rules."""
        return frozenset(f.contract_id for f in self.failures)

    def format(self) -> str:
        """A readable summary: one line per failure, then a count."""
        lines = [f"checked with {self.checkpoint}"] if self.checkpoint else []
        lines += [f.format() for f in self.failures]
        lines += [f"skip {s.check}: {s.reason}" for s in self.skipped]
        verdict = "conforms" if self.ok else "does NOT conform"
        lines.append(
            f"{self.plugin} {verdict}: {len(self.checks)} checks, {len(self.failures)} failed, "
            f"{len(self.skipped)} skipped"
        )
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`ConformanceError` (an ``AssertionError``) if any check failed."""
        if self.failures:
            raise ConformanceError(self)


class ConformanceError(AssertionError):
    """Raised by :meth:`ConformanceReport.raise_if_failed`; ``report`` holds every failure."""

    def __init__(self, report: ConformanceReport) -> None:
        self.report = report
        super().__init__(report.format())
