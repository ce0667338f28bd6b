"""lesample.timing: blocking timings of JAX calls, the benchmarks' command line and tables."""

import sys
import time

import jax.numpy as jnp
import pandas as pd
import pytest

from lesample.timing import benchmark_args, best_time, print_table, timed, wall_time


def test_wall_time_includes_the_call_and_blocks_on_its_result():
    def slow(x):
        time.sleep(0.05)
        return jnp.sum(x)

    assert wall_time(slow, jnp.ones(3)) >= 0.05


def test_best_time_is_the_minimum_of_the_timed_calls_after_a_warm_up():
    delays = iter([0.3, 0.25, 0.02, 0.2])  # warm-up, then three timed calls
    calls = []

    def fn():
        calls.append(1)
        time.sleep(next(delays))
        return jnp.zeros(())

    t = best_time(fn, repeats=3)
    assert len(calls) == 4
    assert 0.02 <= t < 0.2  # the 0.02 s call, not the warm-up or the slower ones


@pytest.mark.parametrize("repeats", [0, -1, 1.5, True, "3"])
def test_best_time_rejects_a_bad_repeats(repeats):
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        best_time(lambda: 0, repeats=repeats)


def test_timed_gives_the_wall_time_and_the_cpu_time_of_the_call():
    def busy():  # spins for 0.03 s of this process's CPU time, however loaded the machine
        end = time.process_time() + 0.03
        while time.process_time() < end:
            pass
        return jnp.zeros(())

    def idle():
        time.sleep(0.05)
        return jnp.zeros(())

    wall, cpu = timed(busy)
    assert cpu >= 0.03 and wall >= 0.03  # spinning costs CPU time
    wall, cpu = timed(idle)
    assert wall >= 0.05 and cpu < wall  # sleeping costs wall time, little CPU


def test_print_table_prints_the_title_and_the_table_without_index(capsys):
    print_table("Speed", pd.DataFrame({"ratio": [1.23456, 0.5]}), float_format="%.2f")
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["", "== Speed =="]
    assert out[2].split() == ["ratio"] and out[3].split() == ["1.23"] and out[4].split() == ["0.50"]


def test_benchmark_args_parse_quick_and_the_script_s_own_options(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench.py", "--quick", "--rounds", "3"])
    args = benchmark_args("A benchmark.\n\nMore.", lambda p: p.add_argument("--rounds", type=int))
    assert args.quick and args.rounds == 3
    assert capsys.readouterr().out.startswith("devices: ")
