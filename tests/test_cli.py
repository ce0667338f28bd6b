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


# --------------------------------------------------------------------------- executors


def grid_cell(cell):
    if cell["seed"] == 1:
        raise ValueError("cell one always fails")
    return pd.DataFrame({"x": [cell["seed"] * 0.5]})


@pytest.fixture
def grid_study(monkeypatch):
    """A study that runs its cells on the command line's executor; seed 1 always fails."""
    from lesample.executor import run_grid

    seen = []

    def run(out_dir, mode, progress, *, seeds=3, executor=None):
        seen.append(executor)
        grid = run_grid(out_dir / "cells", [{"seed": s} for s in range(seeds)], grid_cell,
                        executor=executor, progress=progress, desc="grid")
        rep = Report("Grid study", intro="Cells on an executor.")
        grid.add_to(rep)
        return rep.write(out_dir / "report.html")

    module = types.ModuleType("grid_study_for_tests")
    module.GRID = registry.Study("grid", "Cells on an executor", run)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    use_entry_points(monkeypatch, grid=f"{module.__name__}:GRID")
    return seen


def test_failed_cells_are_reported_and_the_run_exits_1(tmp_path, capsys, grid_study):
    argv = ["study", "grid", "--out", str(tmp_path), "--executor", "serial", "--retries", "1"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "grid: cell failed (ValueError: cell one always fails): seed=1" in err
    assert "study 'grid': 1 cell(s) failed" in err and "Traceback" not in err
    report = (tmp_path / "grid" / "report.html").read_text()
    assert "How the cells ran" in report and "cell one always fails" in report
    assert "grid/report.html" in (tmp_path / "index.html").read_text()
    (executor,) = grid_study
    assert executor.kind == "serial" and executor.retries == 1
    assert "executor" not in registry.load_studies()["grid"].options()


@pytest.mark.parametrize("argv, message", [
    (["--workers", "0"], "--workers: expected an integer >= 1, got '0'"),
    (["--retries", "-1"], "--retries: expected an integer >= 0, got '-1'"),
    (["--executor", "threads"], "invalid choice: 'threads'"),
    (["--executor", "serial", "--workers", "2"], "--executor serial runs one cell at a time"),
    (["--executor", "process", "--scheduler", "tcp://h:1"],
     "--scheduler needs --executor dask"),
])
def test_executor_options_are_refused_before_any_work(tmp_path, capsys, grid_study, argv,
                                                      message):
    assert cli.main(["study", "grid", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert grid_study == [] and not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- issue 16, 12-14


@pytest.mark.parametrize("argv, message", [
    (["study", "kmeans", "--seeds", "-1"], "--seeds: expected an integer >= 1, got '-1'"),
    (["study", "kmeans", "--seeds", "0"], "--seeds: expected an integer >= 1, got '0'"),
    (["study", "samplers", "-O", "seeds=0"], "study 'samplers': `seeds` must be"),
    (["study", "kmeans", "-O", "seeds=-1"], "study 'kmeans': `seeds` must be"),
    (["study", "deepnets", "-O", "seeds=0"], "study 'deepnets': `seeds` must be"),
    (["study", "deepnets", "-O", "epochs=0"], "study 'deepnets': `epochs` must be"),
    (["study", "deepnets", "-O", "round_epochs=0"], "`round_epochs` must be"),
    (["study", "deepnets", "-O", "noise=uniform"], "`noise` must be one of"),
    (["study", "deepnets", "--model", "allcnn"], "`model`: choose from mnistfc, lenet"),
    (["study", "deepnets", "--data-dir", "/nonexistent"], "--data-dir /nonexistent is not"),
    (["run", "--algo", "nosuch"], "study 'deepnets': `algo`: choose from"),
])
def test_bad_study_options_exit_2_in_one_line_before_any_work(tmp_path, capsys, monkeypatch,
                                                              argv, message):
    """No study runs (each real runner is replaced by one that fails the test), nothing is
    written, and the error is one line naming the option."""
    import dataclasses

    for name, study in registry.load_studies().items():
        def refuse(out_dir, mode, progress, *, seeds=None, executor=None, _name=name):
            raise AssertionError(f"study {_name} ran")
        mine = dataclasses.replace(study, run=_with_signature(refuse, study.run))
        monkeypatch.setattr(sys.modules[f"studies.{name}"], "STUDY", mine)
    assert cli.main([*argv, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert [line for line in err.splitlines() if "error" in line] == [
        line for line in err.splitlines() if message in line]  # one error line
    assert not (tmp_path / "r").exists()


def _with_signature(fn, like):
    """``fn`` presented with the signature of ``like`` (so the options it accepts match)."""
    import functools
    import inspect

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args)

    wrapper.__signature__ = inspect.signature(like)
    return wrapper


def test_model_help_names_only_models_a_study_runs(capsys):
    assert cli.main(["study", "--help"]) == 0
    out = capsys.readouterr().out
    assert "allcnn" not in out and "mnistfc,lenet" in out


def test_index_of_a_missing_directory_exits_2(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert cli.main(["index", "--out", str(missing)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert not missing.exists()


def test_a_study_without_its_extra_is_refused_by_study_and_skipped_by_run(
        tmp_path, capsys, monkeypatch):
    calls = []

    def run(out_dir, mode, progress):
        calls.append(mode)
        return Report("Optional").write(out_dir / "report.html")

    module = types.ModuleType("optional_studies_for_tests")
    module.OPT = registry.Study("opt", "Needs an extra", run,
                                requires=("no_such_module_xyz",), extra="xyz")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    use_entry_points(monkeypatch, opt=f"{module.__name__}:OPT")
    assert cli.main(["study", "opt", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no_such_module_xyz" in err and "pip install 'lesample[xyz]'" in err
    # `lesample run` says it skips the study; with no other study there is nothing to run.
    assert cli.main(["run", "--out", str(tmp_path), "--no-progress"]) == 1
    assert "skipping study 'opt' needs no_such_module_xyz" in capsys.readouterr().err
    assert calls == []
