"""vlmcap's pytest plugin: ``pytest --vlmcap-plugin pkg.module:Class`` checks a plugin's contract.

Registered as the ``pytest11`` entry point ``vlmcap``, so it loads in every pytest session where
vlmcap is installed. It therefore lives outside the ``vlmcap`` package and imports vlmcap only
inside hooks and fixtures: loading it costs nothing, and vlmcap is never imported before an
import hook (``--jaxtyping-packages=vlmcap,...``) is installed.

Options:
    ``--vlmcap-plugin SPEC`` (repeatable): a plugin as ``pkg.module:Class``, or a registered
    variant name. Adds one test item per conformance check, named
    ``vlmcap[SPEC]::<check name>``, so ``-k check_refine`` selects checks.
    ``--vlmcap-model-path DIR``: the checkpoint folder that ``processor()`` loads through
    ``cls.model_path()`` (default: vlmcap's tiny checkpoint; see ``vlmcap.testing``).
    ``--vlmcap-max-examples N``: Hypothesis examples per property check (default 20).
    ``--vlmcap-engine``: also run C-ENGINE-001 (a real vLLM engine, stage 1 and stage 2).

Fixtures (session-scoped, so they work with ``@given`` tests):
    ``vlmcap_plugin``: the first ``--vlmcap-plugin`` class (the test is skipped without one).
    ``vlmcap_model_path``: the ``--vlmcap-model-path`` folder, or ``None``.
"""

from pathlib import Path
from typing import Any

import pytest
from beartype import BeartypeConf, beartype


MARKER = "vlmcap_conformance"

beartype_pep484 = beartype(conf=BeartypeConf(is_pep484_tower=True))
"""The type checker vlmcap's own test suite gives jaxtyping's import hook
(``--jaxtyping-packages=vlmcap,_vlmcap_pytestplugin.beartype_pep484``): beartype with PEP 484's
numeric tower (an ``int`` is a valid ``float``), as at vlmcap's public boundary."""


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``--vlmcap-*`` options."""
    group = parser.getgroup("vlmcap", "vlmcap plugin conformance suite")
    group.addoption(
        "--vlmcap-plugin",
        action="append",
        default=[],
        metavar="SPEC",
        help="check this plugin (pkg.module:Class or a variant name); repeatable",
    )
    group.addoption(
        "--vlmcap-model-path",
        default=None,
        metavar="DIR",
        help="checkpoint folder for the plugin's processor() (default: a tiny checkpoint)",
    )
    group.addoption(
        "--vlmcap-max-examples",
        type=int,
        default=20,
        metavar="N",
        help="Hypothesis examples per property check (default: 20)",
    )
    group.addoption(
        "--vlmcap-engine",
        action="store_true",
        default=False,
        help="also run the real-engine round trip C-ENGINE-001",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker carried by the conformance items."""
    config.addinivalue_line(
        "markers", f"{MARKER}: a check of the vlmcap plugin contract (added by --vlmcap-plugin)"
    )


class VlmcapCheckItem(pytest.Item):
    """One conformance check of one plugin."""

    def __init__(self, *, plugin: Any, check: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plugin = plugin
        self.check = check
        self.add_marker(MARKER)

    def runtest(self) -> None:
        """Run the check; a broken rule raises ``ContractViolation`` (an AssertionError)."""
        self.check(self.plugin)

    def repr_failure(
        self,
        excinfo: pytest.ExceptionInfo[BaseException],
        style: Any = None,
    ) -> Any:
        """A broken rule reads as its ID and message; anything else as a normal traceback."""
        from vlmcap.testing._report import ContractViolation

        if isinstance(excinfo.value, ContractViolation):
            return f"{excinfo.value}\n(the rules and their reasons: contracts/README.md)"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """Where the item comes from, for reports."""
        return self.path, None, f"vlmcap conformance {self.name}"


def _model_path(config: pytest.Config) -> Path | None:
    value = config.getoption("vlmcap_model_path")
    return None if value is None else Path(value)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Append one item per check for each ``--vlmcap-plugin`` (before ``-k``/``-m`` select)."""
    specs: list[str] = config.getoption("vlmcap_plugin") or []
    if not specs:
        return
    from vlmcap._errors import VlmcapError
    from vlmcap.testing._checks import load_plugin, plugin_checks

    for spec in specs:
        try:
            plugin = load_plugin(spec)
        except VlmcapError as exc:
            raise pytest.UsageError(f"--vlmcap-plugin {spec}: {exc}") from exc
        checks = plugin_checks(
            plugin,
            model_path=_model_path(config),
            max_examples=config.getoption("vlmcap_max_examples"),
            engine=config.getoption("vlmcap_engine"),
        )
        items.extend(
            VlmcapCheckItem.from_parent(
                session, name=f"vlmcap[{spec}]::{check.name}", plugin=plugin, check=check
            )
            for check in checks
        )


@pytest.fixture(scope="session")
def vlmcap_model_path(pytestconfig: pytest.Config) -> Path | None:
    """The ``--vlmcap-model-path`` folder, or ``None`` (checks then use a tiny checkpoint)."""
    return _model_path(pytestconfig)


@pytest.fixture(scope="session")
def vlmcap_plugin(pytestconfig: pytest.Config) -> Any:
    """The first ``--vlmcap-plugin`` class; the test is skipped when none was given."""
    specs: list[str] = pytestconfig.getoption("vlmcap_plugin") or []
    if not specs:
        pytest.skip("no --vlmcap-plugin given")
    from vlmcap.testing._checks import load_plugin

    return load_plugin(specs[0])
