"""The registry of runnable studies.

A study lives in ``studies/<name>/__init__.py`` (or ``studies/<name>.py``) and registers
its entry point::

    from studies.registry import register

    @register("kmeans", description="Local-entropy k-means against Lloyd/EM over random starts")
    def run(out_dir: Path, mode: str, progress: bool, *, seeds: int | None = None) -> Path:
        ...                       # out_dir is <reports>/kmeans; mode is "quick" or "full"
        return out_dir / "report.html"

``run`` takes the study's own directory, the mode and whether to show progress bars, plus
any keyword options it supports (the command line forwards only the options a user gives,
and refuses those ``run`` does not accept). Keep the module's top level light: import JAX
and the study's machinery inside ``run``, because ``lesample list`` imports every study.

:func:`load_studies` imports the modules named in :data:`KNOWN_STUDIES`; a study whose
module does not exist (yet) is skipped, while any other import error (a missing dependency,
a syntax error) propagates, with a note naming the study module.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "KNOWN_STUDIES",
    "Study",
    "UnknownStudyError",
    "get_study",
    "load_studies",
    "register",
]

#: The study modules under ``studies/``, in the order the index lists them.
KNOWN_STUDIES: tuple[str, ...] = ("samplers", "kmeans", "deepnets")

MODES = ("quick", "full")


@dataclass(frozen=True)
class Study:
    """A registered study: its name, a one-line description, and its entry point
    ``run(out_dir: Path, mode: str, progress: bool, **options) -> Path`` (the report)."""

    name: str
    description: str
    run: Callable[..., Path]

    def _parameters(self) -> tuple[list[inspect.Parameter], bool]:
        """The keyword options of ``run`` (its parameters after the three positional ones)
        and whether it also takes ``**options``."""
        params = list(inspect.signature(self.run).parameters.values())
        named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        positional = [p for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
        fixed = {p.name for p in positional[:3]}
        options = [p for p in params if p.kind in named and p.name not in fixed]
        var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        return options, var_kw

    def options(self) -> list[str]:
        """The keyword options ``run`` names beyond ``out_dir``, ``mode`` and ``progress``."""
        return [p.name for p in self._parameters()[0]]

    def accepts(self, option: str) -> bool:
        """Whether ``run`` takes the keyword option ``option``."""
        options, var_kw = self._parameters()
        if option in {p.name for p in options}:
            return True
        fixed = list(inspect.signature(self.run).parameters)[:3]
        return var_kw and option not in fixed


class UnknownStudyError(KeyError):
    """No study of that name is registered; the message lists those that are."""

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0]) if self.args else ""


_REGISTRY: dict[str, Study] = {}


def register(name: str, *, description: str) -> Callable[[Callable[..., Path]], Callable]:
    """Decorator registering ``run`` as the study ``name`` (see the module docstring).

    Registering a name again from the same module replaces the entry (a reloaded module);
    from a different module it is an error.
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"study names are short identifiers, got {name!r}")

    def decorator(run: Callable[..., Path]) -> Callable[..., Path]:
        old = _REGISTRY.get(name)
        if old is not None and getattr(old.run, "__module__", None) != getattr(
            run, "__module__", None
        ):
            raise ValueError(
                f"study {name!r} is already registered by {old.run.__module__}"
            )
        _REGISTRY[name] = Study(name, " ".join(description.split()), run)
        return run

    return decorator


def load_studies() -> dict[str, Study]:
    """Import the known study modules and return the registered studies, in
    :data:`KNOWN_STUDIES` order (then any other registered study, by name)."""
    for name in KNOWN_STUDIES:
        module = f"{__package__ or 'studies'}.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # the study itself is not written yet
                continue
            exc.add_note(f"while importing the study module {module}")
            raise
        except Exception as exc:
            exc.add_note(f"while importing the study module {module}")
            raise
    rank = {n: i for i, n in enumerate(KNOWN_STUDIES)}
    names = sorted(_REGISTRY, key=lambda n: (rank.get(n, len(rank)), n))
    return {n: _REGISTRY[n] for n in names}


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
