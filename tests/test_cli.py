"""The ``lesample`` command line: help, exit statuses, listing, and running a (fake) study."""

import sys
import types
from importlib.metadata import EntryPoint

import pandas as pd
import pytest

from lesample import cli, registry
from lesample.report import Report
from lesample.store import run_cells


def use_entry_points(monkeypatch, **studies):
    """Make ``lesample.registry`` see only the entry points ``name=value`` given."""
    eps = [EntryPoint(name, value, registry.ENTRY_POINT_GROUP) for name, value in studies.items()]
    monkeypatch.setattr(registry, "entry_points",
                        lambda group: [ep for ep in eps if ep.group == group])


@pytest.fixture
def fake_registry(monkeypatch):
    """Two studies in a module of their own, found through the ``lesample.studies`` entry
    points (no real study module is imported); returns the calls made."""
    calls = []

    def run(out_dir, mode, progress, *, seeds=2):
        calls.append({"mode": mode, "progress": progress, "seeds": seeds})
        df = run_cells(out_dir / "cells", [{"seed": s} for s in range(seeds)],
                       lambda c: pd.DataFrame({"x": [c["seed"] * 0.5]}), progress=progress)
        return (Report("Fake study", intro="A fake study for the tests.")
                .add_findings([f"{len(df)} cells ran."])
                .add_table(df, caption="All cells")
                .write(out_dir / "report.html"))

    def broken(out_dir, mode, progress):
        raise RuntimeError("no data\nsecond line")

    module = types.ModuleType("fake_studies_for_tests")
    module.FAKE = registry.Study("fake", "A fake study\n  for the tests.", run)
    module.BROKEN = registry.Study("broken", "Always fails", broken)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    use_entry_points(monkeypatch, fake=f"{module.__name__}:FAKE",
                     broken=f"{module.__name__}:BROKEN")
    return calls


@pytest.mark.parametrize("argv", [["--help"], ["list", "--help"], ["study", "--help"],
                                  ["run", "--help"], ["index", "--help"], ["--version"]])
def test_help_exits_0(argv, capsys):
    assert cli.main(argv) == 0
    assert "lesample" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["nosuchcommand"], ["study"], ["study", "x", "--quick",
                                  "--full"], ["study", "fake", "--seeds", "many"]])
def test_usage_errors_exit_2(argv, capsys, fake_registry):
    assert cli.main(argv) == 2
    assert "usage:" in capsys.readouterr().err


def test_unknown_study_exits_2_and_lists_studies(capsys, fake_registry):
    assert cli.main(["study", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'nope'" in err and "fake" in err and "broken" in err
    assert "Traceback" not in err


def test_option_the_study_does_not_take_exits_2(tmp_path, capsys, fake_registry):
    assert cli.main(["study", "fake", "--out", str(tmp_path), "--model", "lenet"]) == 2
    assert "does not take --model" in capsys.readouterr().err
    assert fake_registry == []


def test_list(capsys, fake_registry):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fake" in out and "A fake study for the tests." in out and "--seeds" in out


def test_study_writes_report_and_index(tmp_path, capsys, fake_registry):
    out = tmp_path / "reports"
    assert cli.main(["study", "fake", "--out", str(out), "--no-progress", "--seeds", "3"]) == 0
    assert fake_registry == [{"mode": "quick", "progress": False, "seeds": 3}]
    report = (out / "fake" / "report.html").read_text()
    assert "3 cells ran." in report and "<table>" in report
    index = (out / "index.html").read_text()
    assert '<a href="fake/report.html">Fake study</a>' in index
    assert "wrote" in capsys.readouterr().out
    # Generic options (-O) are forwarded, JSON-decoded; --full selects the full mode.
    assert cli.main(["study", "fake", "--out", str(out), "--full", "--no-progress",
                     "-O", "seeds=4"]) == 0
    assert fake_registry[-1] == {"mode": "full", "progress": False, "seeds": 4}


def test_failure_exits_1_with_one_line(tmp_path, capsys, fake_registry):
    assert cli.main(["study", "broken", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "lesample: error: RuntimeError: no data" in err
    assert "second line" not in err and "Traceback" not in err
    assert cli.main(["study", "broken", "--out", str(tmp_path), "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_run_all_continues_past_a_failure(tmp_path, capsys, fake_registry):
    assert cli.main(["run", "--out", str(tmp_path), "--no-progress"]) == 1
    assert (tmp_path / "fake" / "report.html").is_file()
    assert "fake/report.html" in (tmp_path / "index.html").read_text()
    assert "1 of 2 studies failed: broken" in capsys.readouterr().err


def test_registry_skips_missing_study_modules_only(tmp_path, monkeypatch):
    use_entry_points(monkeypatch, no_such_study_xyz="no_such_study_xyz:STUDY")
    assert registry.load_studies() == {}  # a study whose module is gone is simply absent

    # A study that exists but needs a missing package must say so, not vanish.
    (tmp_path / "needs_dep_xyz.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    use_entry_points(monkeypatch, needs_dep_xyz="needs_dep_xyz:STUDY")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz") as info:
        registry.load_studies()
    assert "needs_dep_xyz:STUDY" in " ".join(info.value.__notes__)
    assert "needs_dep_xyz" not in sys.modules


def test_registry_finds_the_installed_studies_in_order():
    """The real entry points of this distribution: the three studies, in their order, each
    a Study of its own name; ``lesample`` itself never imports ``studies``."""
    studies = registry.load_studies()
    assert list(studies)[:3] == ["samplers", "kmeans", "deepnets"]
    assert all(s.name == n for n, s in studies.items())


def test_lesample_does_not_import_studies():
    import subprocess

    code = ("import sys, lesample, lesample.cli, lesample.registry, lesample.store; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'studies'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_an_entry_point_must_name_a_study(monkeypatch):
    use_entry_points(monkeypatch, wrong="lesample.registry:Study")
    with pytest.raises(TypeError, match="must name a lesample.registry.Study called 'wrong'"):
        registry.load_studies()


def test_studies_cache_compiled_programs_on_disk(tmp_path, monkeypatch, fake_registry):
    """A study run points JAX's persistent compilation cache at $XDG_CACHE_HOME/lesample/jax
    unless one is already chosen."""
    import jax

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    before = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    try:
        assert cli.main(["study", "fake", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xdg" / "lesample" / "jax")
        chosen = str(tmp_path / "chosen")
        jax.config.update("jax_compilation_cache_dir", chosen)
        assert cli.main(["study", "fake", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
        assert jax.config.jax_compilation_cache_dir == chosen
    finally:
        jax.config.update("jax_compilation_cache_dir", before)
