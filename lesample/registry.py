"""The studies the command line can run, found through the ``lesample.studies`` entry points.

A study is a :class:`Study` object in any importable module, registered by one line in its
distribution's ``pyproject.toml``::

    [project.entry-points."lesample.studies"]
    kmeans = "studies.kmeans:STUDY"

and defined beside its runner::

    from lesample.registry import Study

    def run(out_dir: Path, mode: str, progress: bool, *, seeds: int | None = None,
            executor=None) -> Path:
        ...                       # out_dir is <reports>/kmeans; mode is "quick" or "full"
        return out_dir / "report.html"

    STUDY = Study("kmeans", "Local-entropy k-means against Lloyd over random starts", run,
                  check=check)   # optional: check(mode, **options) raises ValueError

``run`` takes the study's own directory, the mode and whether to show progress bars, plus
any keyword options it supports (the command line forwards only the options a user gives,
and refuses those ``run`` does not accept). A runner that takes ``executor`` receives the
command line's :class:`lesample.executor.CellExecutor` (``--workers``, ``--executor``) and
spreads its cells over it. Keep the module's top level light: import JAX and the study's
machinery inside ``run``, because ``lesample list`` imports every study.

Studies come in the order of their ``order`` field (then by name): ``lesample list``,
``lesample run`` and the index page list them so. The dependency is one-way: studies import
``lesample``; ``lesample`` never imports a study module by name.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

__all__ = ["ENTRY_POINT_GROUP", "RUNTIME_KEYWORDS", "Study", "UnknownStudyError", "get_study",
           "load_studies"]

#: The entry-point group that lists the studies.
ENTRY_POINT_GROUP = "lesample.studies"

#: Keywords of ``run`` that the command line supplies itself: not user options.
RUNTIME_KEYWORDS = ("executor",)


@dataclass(frozen=True)
class Study:
    """A study: its name, a one-line description, its entry point
    ``run(out_dir: Path, mode: str, progress: bool, **options) -> Path`` (the report), and
    its place among the studies (``order``, then the name)."""

    name: str
    description: str
    run: Callable[..., Path]
    order: int = 100
    #: ``check(mode, **options)``: raises ``ValueError`` naming a bad option, before any
    #: work starts (``lesample run`` checks every study's options before running the first).
    check: Callable[..., object] | None = None
    #: Modules the study needs beyond lesample's own dependencies, and the optional extra
    #: (``pip install 'lesample[extra]'``) that installs them.
    requires: tuple[str, ...] = ()
    extra: str | None = None

    def __post_init__(self):
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"study names are short identifiers, got {self.name!r}")
        if not callable(self.run):
            raise TypeError(f"study {self.name!r}: run must be callable, got {self.run!r}")
        object.__setattr__(self, "description", " ".join(self.description.split()))

    def _parameters(self) -> tuple[list[inspect.Parameter], bool]:
        """The keyword options of ``run`` (its parameters after the three positional ones,
        less the runtime keywords) and whether it also takes ``**options``."""
        params = list(inspect.signature(self.run).parameters.values())
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        positional = [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        fixed = {p.name for p in positional[:3]} | set(RUNTIME_KEYWORDS)
        options = [p for p in params if p.kind in named and p.name not in fixed]
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        return options, var_kw

    def options(self) -> list[str]:
        """The keyword options ``run`` names beyond ``out_dir``, ``mode``, ``progress`` and
        the runtime keywords."""
        return [p.name for p in self._parameters()[0]]

    def accepts(self, option: str) -> bool:
        """Whether ``run`` takes the keyword option ``option``."""
        options, var_kw = self._parameters()
        if option in {p.name for p in options}:
            return True
        fixed = list(inspect.signature(self.run).parameters)[:3]
        return var_kw and option not in fixed and option not in RUNTIME_KEYWORDS

    def validate(self, mode: str, options: dict) -> None:
        """Check ``options`` (those this study accepts) with the study's ``check``;
        ``ValueError`` naming the option if one is bad."""
        if self.check is not None:
            self.check(mode, **{k: v for k, v in options.items() if self.accepts(k)})

    def missing(self) -> str | None:
        """``None`` when every module in ``requires`` is installed; otherwise a sentence
        naming the missing ones and the extra that installs them."""
        gone = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if not gone:
            return None
        how = f"pip install 'lesample[{self.extra}]'" if self.extra else "install them"
        return f"study {self.name!r} needs {', '.join(gone)} ({how})"

    def takes_executor(self) -> bool:
        """Whether ``run`` takes the ``executor`` keyword (spreads its cells over a pool)."""
        params = inspect.signature(self.run).parameters
        return "executor" in params


class UnknownStudyError(KeyError):
    """No study of that name is registered; the message lists those that are."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


def load_studies() -> dict[str, Study]:
    """The registered studies, by name, sorted by ``(order, name)``.

    An entry point whose module is gone (a stale editable install) is skipped; any other
    import error (a missing dependency, a syntax error) propagates, with a note naming the
    entry point. An entry point must name a :class:`Study` of its own name.
    """
    studies: dict[str, Study] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in studies:
            continue  # the same distribution seen twice on sys.path
        try:
            study = ep.load()
        except ModuleNotFoundError as exc:
            if exc.name == ep.module:
                continue
            exc.add_note(f"while loading the study {ep.name!r} ({ep.value})")
            raise
        except Exception as exc:
            exc.add_note(f"while loading the study {ep.name!r} ({ep.value})")
            raise
        if not isinstance(study, Study) or study.name != ep.name:
            raise TypeError(f"the entry point {ep.name} = {ep.value!r} of {ENTRY_POINT_GROUP} "
                            f"must name a lesample.registry.Study called {ep.name!r}, got "
                            f"{study!r}")
        studies[ep.name] = study
    return dict(sorted(studies.items(), key=lambda item: (item[1].order, item[0])))


def get_study(name: str) -> Study:
    """The study ``name``; :class:`UnknownStudyError` (listing the available ones) if none."""
    studies = load_studies()
    try:
        return studies[name]
    except KeyError:
        available = ", ".join(studies) or "none"
        raise UnknownStudyError(
            f"unknown study {name!r} (available: {available})"
        ) from None
