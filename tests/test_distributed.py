"""Replicas over devices and processes. Each check runs in a subprocess whose XLA_FLAGS (set
before JAX starts) give it virtual CPU devices; the multi-process ones start real
``jax.distributed`` processes on 127.0.0.1 (gloo collectives)."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
U = 2.0 ** -24


def _env(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _last_json(stdout: str) -> dict:
    """The JSON line of a run (gloo writes its own lines to stdout too)."""
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def _python(code: str, devices: int, timeout: float = 900) -> dict:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=_env(devices),
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return _last_json(out.stdout)


def _module(args: list[str], devices: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lesample.distributed", *args],
                            env=_env(devices), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SHARDED = """
    import json
    import jax
    from lesample.distributed import demo, replica_mesh
    out = {}
    for algo, n, devices in (("parle", 8, 8), ("elastic-sgd", 8, 4), ("parle", 2, 2)):
        mesh = replica_mesh(n, jax.devices()[:devices])
        out[f"{algo} {n} {devices}"] = [demo(n, 3, mesh, algo), demo(n, 3, None, algo)]
    errors = []
    try:
        replica_mesh(3)
    except ValueError as e:
        errors.append(str(e))
    from lesample import optim
    tx = optim.elastic_sgd(0.1, 0.5, mesh=replica_mesh(2, jax.devices()[:2]))
    x = optim.replicate({"w": jax.numpy.ones(2)}, 3)
    try:
        tx.update(x, tx.init(x), x)
    except ValueError as e:
        errors.append(str(e))
    out["errors"] = errors
    print(json.dumps(out))
"""


@pytest.mark.slow
def test_sharded_runs_equal_unsharded_runs():
    """Sharded and unsharded runs differ in the order of the replica sum (``(n-1) U max|x|``
    per round) and in XLA's kernels for another number of replicas per device (a few ``U``
    of the gradient): within ``(n + 4) U max|x|`` per round, carried by Nesterov momentum (at
    most ``1/(1-0.9) = 10``) over the 3 rounds. A wrong mean (say, of one device's replicas)
    moves the replicas by ~1e-2."""
    out = _python(SHARDED, devices=8)
    for name, (sharded, unsharded) in out.items():
        if name == "errors":
            continue
        n = int(name.split()[1])
        assert sharded["num_grads"] == unsharded["num_grads"]
        for leaf in sharded["replicas"]:
            a = np.asarray(sharded["replicas"][leaf])
            b = np.asarray(unsharded["replicas"][leaf])
            assert a.shape[0] == n
            tol = 3 * 10 * (n + 4) * U * np.abs(b).max()
            np.testing.assert_allclose(a, b, rtol=0, atol=tol, err_msg=name)
    first, second = out["errors"]
    assert "n = 3 replicas do not divide over 8 devices" in first
    assert "n = 3 replicas do not divide over the 2 devices of `mesh`" in second


@pytest.mark.slow
def test_two_processes_give_the_numbers_of_one_process():
    """Two jax.distributed processes with one CPU device each against one process with two
    devices: the same mesh shape, so the same sums (bit for bit)."""
    common = ["--replicas", "4", "--steps", "3", "--timeout", "60"]
    port = _free_port()
    procs = [_module(["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                      "--process-id", str(i), *common], devices=1) for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    multi = _last_json(outs[0][0])
    one = _module(common, devices=2)
    stdout, stderr = one.communicate(timeout=900)
    assert one.returncode == 0, stderr[-3000:]
    single = _last_json(stdout)
    assert (multi.pop("processes"), multi.pop("devices")) == (2, 2)
    assert (single.pop("processes"), single.pop("devices")) == (1, 2)
    assert multi == single
    assert multi["num_grads"] == [12, 12, 12, 12]  # 3 rounds of L = 4


@pytest.mark.slow
def test_a_missing_process_is_an_error_within_the_timeout():
    """A worker without its coordinator raises in Python; a coordinator without its worker
    is ended by JAX's DEADLINE_EXCEEDED; both within the timeout, neither hangs."""
    port = _free_port()
    for pid, expected in ((1, "no coordinator answered at 127.0.0.1"),
                          (0, "DEADLINE_EXCEEDED")):
        t0 = time.monotonic()
        p = _module(["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                     "--process-id", str(pid), "--timeout", "3"], devices=1)
        _, err = p.communicate(timeout=120)
        assert p.returncode != 0
        assert expected in err, err[-3000:]
        assert time.monotonic() - t0 < 60


FIT = """
    import hashlib, json, sys
    import jax
    import numpy as np
    from lesample import distributed
    if len(sys.argv) > 1:
        distributed.initialize(sys.argv[1], 2, int(sys.argv[2]), timeout_s=60)
    from lesample.data import load_dataset
    from lesample.train import TrainConfig, fit
    data = load_dataset("digits", limit=256)
    config = TrainConfig(model="mnistfc", algo="elastic-sgd", replicas=2, epochs=2,
                         batch_size=32, eval_rows=128)
    result = fit(config, data, checkpoint=sys.argv[-1], until=1)
    result = fit(config, data, checkpoint=sys.argv[-1])  # resumes from epoch 1
    history = result.history.drop(columns=["train_seconds", "eval_seconds"])
    digest = [hashlib.sha256(np.asarray(u).tobytes()).hexdigest()
              for u in jax.tree_util.tree_leaves(result.params)]
    print(json.dumps(dict(history=history.to_dict("records"), params=digest,
                          processes=jax.process_count(), devices=jax.device_count())))
"""


@pytest.mark.slow
def test_fit_on_two_processes_gives_the_numbers_of_one_process(tmp_path):
    """``lesample.train.fit`` of Elastic-SGD (n = 2) on two jax.distributed processes with one
    CPU device each, stopped after one epoch and resumed from process 0's checkpoint,
    against one process with two devices: the same final parameters bit for bit (the same
    mesh shape, so the same sums), the same history up to the order of evaluation sums."""
    port = _free_port()
    env = _env(1)
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(FIT), f"127.0.0.1:{port}",
                               str(i), str(tmp_path / "multi.npz")], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    multi = [_last_json(out) for out, _ in outs]
    single = _python(FIT.replace("sys.argv[-1]", repr(str(tmp_path / "single.npz"))), devices=2)
    assert [(m.pop("processes"), m.pop("devices")) for m in multi] == [(2, 2), (2, 2)]
    assert (single.pop("processes"), single.pop("devices")) == (1, 2)
    assert multi[0] == multi[1]
    assert multi[0]["params"] == single["params"]  # the same training, bit for bit
    # Evaluation runs on a gathered copy of x here and on x as the mesh left it there: the
    # losses may differ in the order of their 256-row float32 sums (256 U relative).
    for m, s in zip(multi[0]["history"], single["history"], strict=True):
        for name in ("epoch", "replicas", "outer_steps", "num_grads"):
            assert m[name] == s[name]
        for name in ("train_loss", "train_error", "val_loss", "val_error"):
            np.testing.assert_allclose(m[name], s[name], rtol=256 * U, atol=0)
    assert [row["num_grads"] for row in single["history"]] == [8, 16]  # 4 rounds x 2 each
    assert (tmp_path / "multi.npz").exists()
