"""Training engine: exact resumption after a kill, effective epochs, the jitted steps,
BatchNorm statistics recomputed at x, checkpoints, schedules."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lesample.train.loop as loop
from lesample.data import load_dataset
from lesample.nets import MnistFC, functional
from lesample.train import (
    ALGORITHMS,
    TrainConfig,
    canonical_algorithm,
    chunked,
    epoch_indices,
    fit,
    load_checkpoint,
    lr_schedule,
    make_optimizer,
    make_step,
    recalibrate,
    save_checkpoint,
    steps_per_epoch,
)

METRICS = ["epoch", "outer_steps", "num_grads", "effective_epochs", "train_loss",
           "train_error", "val_loss", "val_error"]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=320)


def tiny(**kw):
    base = dict(model="mnistfc", algo="entropy_sgd", epochs=3, batch_size=16, seed=3,
                eval_rows=200, eval_chunk=100)
    return TrainConfig(**{**base, **kw})


def assert_same_params(a, b):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class Killed(Exception):
    pass


def test_killed_run_resumes_to_identical_numbers(digits, tmp_path, monkeypatch):
    """Kill after epoch 2's checkpoint, resume: same parameters and history, bit for bit."""
    config = tiny()
    whole = fit(config, digits)

    real_save = loop.save_checkpoint

    def save_then_die(path, tree, header):
        real_save(path, tree, header)
        if header["epoch"] == 2:
            raise Killed

    ckpt = tmp_path / "run.npz"
    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        fit(config, digits, checkpoint=ckpt)
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    _, header = load_checkpoint(ckpt, (whole.params, _opt_template(config, whole)))
    assert header["epoch"] == 2

    resumed = fit(config, digits, checkpoint=ckpt)
    assert_same_params(resumed.params, whole.params)
    assert_same_params(resumed.batch_stats, whole.batch_stats)
    assert resumed.history[METRICS].equals(whole.history[METRICS])
    # the first two epochs were read back, not recomputed
    first = resumed.history.train_seconds.iloc[:2].to_numpy()
    np.testing.assert_array_equal(first, [h["train_seconds"] for h in header["history"]])
    # a finished run resumes to itself
    again = fit(config, digits, checkpoint=ckpt)
    assert again.history[METRICS].equals(whole.history[METRICS])


@pytest.mark.parametrize("algo", ["sgd", "hj"])
def test_steps_per_call_change_speed_not_numbers(digits, algo):
    """Outer steps batched into one jitted call (``grads_per_call=7``: chunks of 7 SGD or 1
    HJ steps, with a shorter last chunk) give the numbers of one step per call, bit for bit:
    the same keys and mini-batches, the same arithmetic."""
    config = tiny(algo=algo, epochs=2)
    one, batched = fit(config, digits, grads_per_call=1), fit(config, digits, grads_per_call=7)
    assert_same_params(batched.params, one.params)
    assert batched.history[METRICS].equals(one.history[METRICS])
    with pytest.raises(ValueError, match="grads_per_call"):
        fit(config, digits, grads_per_call=0)


def _opt_template(config, result):
    steps = steps_per_epoch(320, config.batch_size, ALGORITHMS[config.algo].num_grads)
    tx = make_optimizer(config.algo, steps_per_epoch=steps, epochs=config.epochs)
    return tx.init(result.params)


def test_checkpoint_of_another_run_is_refused(digits, tmp_path):
    ckpt = tmp_path / "run.npz"
    fit(tiny(algo="sgd", epochs=1), digits, checkpoint=ckpt)
    with pytest.raises(ValueError, match="another run"):
        fit(tiny(algo="sgd", epochs=1, seed=4), digits, checkpoint=ckpt)
    with pytest.raises(ValueError, match="another model or optimiser"):
        load_checkpoint(ckpt, {"w": jnp.zeros(3)})


def test_checkpoint_round_trip(tmp_path):
    tree = {"a": jnp.arange(6.0).reshape(2, 3), "b": (jnp.int32(4), jax.random.PRNGKey(2))}
    save_checkpoint(tmp_path / "c.npz", tree, {"epoch": 7, "x": [1.5]})
    back, header = load_checkpoint(tmp_path / "c.npz", tree)
    assert header == {"epoch": 7, "x": [1.5]}
    assert_same_params(back, tree)
    with pytest.raises(ValueError, match="expected"):
        load_checkpoint(tmp_path / "c.npz", {"a": jnp.zeros((3, 2)), "b": tree["b"]})


@pytest.mark.parametrize("algo", ["sgd", "hj", "heat"])
def test_effective_epochs_count_gradients(digits, algo):
    """One epoch = round(N / (B L)) outer steps of L gradients; effective epochs =
    gradients x B / N (Remark 22)."""
    config = tiny(algo=algo, epochs=2, batch_size=32)
    history = fit(config, digits).history
    L = ALGORITHMS[algo].num_grads
    steps = steps_per_epoch(320, 32, L)
    assert steps == max(1, round(320 / (32 * L)))
    np.testing.assert_array_equal(history.outer_steps, [steps, 2 * steps])
    np.testing.assert_array_equal(history.num_grads, [steps * L, 2 * steps * L])
    np.testing.assert_allclose(history.effective_epochs, history.num_grads * 32 / 320)
    assert np.isfinite(history[METRICS].to_numpy(float)).all()


def test_step_is_deterministic_in_its_keys(digits):
    """The step's only randomness is its arguments (dropout key) and the optimiser state."""
    fm = functional(MnistFC(rngs=nnx.Rngs(0)))
    tx = make_optimizer("entropy_sgd", steps_per_epoch=1, epochs=1, noise="rademacher")
    step = make_step(fm, tx)
    data = (jnp.asarray(digits.train_images), jnp.asarray(digits.train_labels))
    idx = np.arange(20 * 8, dtype=np.int32).reshape(20, 8)

    def run(key):
        p = jax.tree_util.tree_map(jnp.copy, fm.params)
        return step(p, tx.init(p), data, idx[None], jax.random.PRNGKey(key)[None])

    (p1, s1), (p2, _), (p3, _) = run(0), run(0), run(1)
    assert int(s1.num_grads) == 20 and int(s1.count) == 1
    assert_same_params(p1, p2)
    assert not np.array_equal(np.asarray(p1["fc1"]["kernel"][...]),
                              np.asarray(p3["fc1"]["kernel"][...]))
    # The step's XLA options (CPU_COMPILER_OPTIONS) change buffers, not numbers.
    p = jax.tree_util.tree_map(jnp.copy, fm.params)
    plain = jax.jit(step.__wrapped__)(p, tx.init(p), data, idx[None],
                                      jax.random.PRNGKey(0)[None])
    assert_same_params(p1, plain[0])


def test_recalibrate_gives_the_batch_statistics_at_x(digits):
    """One chunk, no dropout: the first BatchNorm's statistics are the mean and (biased)
    variance of fc1's outputs over the chunk; two chunks average them."""
    fm = functional(MnistFC(rngs=nnx.Rngs(1)))
    x = digits.train_images[:64]
    h = np.asarray(fm.merge(fm.params, fm.batch_stats).fc1(jnp.asarray(x.reshape(64, -1))))
    one = recalibrate(fm, fm.params, chunked(x, digits.train_labels[:64], 64))
    np.testing.assert_allclose(one["bn1"]["mean"][...], h.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one["bn1"]["var"][...], h.var(0), rtol=1e-4, atol=1e-6)
    two = recalibrate(fm, fm.params, chunked(x, digits.train_labels[:64], 32))
    halves = (h[:32].var(0) + h[32:].var(0)) / 2
    np.testing.assert_allclose(two["bn1"]["var"][...], halves, rtol=1e-4, atol=1e-6)
    with_dropout = recalibrate(fm, fm.params, chunked(x, digits.train_labels[:64], 64),
                               jax.random.PRNGKey(0))
    assert not np.allclose(with_dropout["bn2"]["var"][...], one["bn2"]["var"][...])


def test_chunked_masks_the_padding():
    images, labels = np.arange(7.0)[:, None], np.arange(7)
    c = chunked(images, labels, 3)
    assert c.images.shape == (3, 3, 1)
    np.testing.assert_array_equal(c.mask.reshape(-1), [1] * 7 + [0] * 2)


def test_epoch_indices_are_permutations_fixed_by_seed_and_epoch():
    a = epoch_indices(0, 5, 100, (3, 2, 10))
    assert a.shape == (3, 2, 10) and a.dtype == np.int32
    assert len(np.unique(a)) == 60  # within one permutation: no repeats
    np.testing.assert_array_equal(a, epoch_indices(0, 5, 100, (3, 2, 10)))
    assert not np.array_equal(a, epoch_indices(0, 6, 100, (3, 2, 10)))
    b = epoch_indices(0, 5, 50, (2, 2, 20))  # 80 rows from 50: two permutations
    assert np.bincount(b.reshape(-1), minlength=50).min() >= 1


def test_lr_schedule_drops_by_five_in_effective_epochs():
    s = lr_schedule(0.1, steps_per_epoch=10, drop_every=3, epochs=7)
    np.testing.assert_allclose([s(0), s(29), s(30), s(59), s(60)],
                               [0.1, 0.1, 0.02, 0.02, 0.004], rtol=1e-6)


def test_algorithm_names_and_config_checks():
    assert canonical_algorithm("Entropy-SGD") == "entropy_sgd"
    with pytest.raises(ValueError, match="unknown algorithm"):
        canonical_algorithm("adam")
    assert TrainConfig(algo="entropy-sgd").algo == "entropy_sgd"
    with pytest.raises(ValueError, match="unknown model"):
        TrainConfig(model="resnet")
    with pytest.raises(ValueError, match="noise"):
        TrainConfig(noise="uniform")
    with pytest.raises(ValueError, match="epochs"):
        dataclasses.replace(TrainConfig(), epochs=0)
    with pytest.raises(TypeError, match="unroll"):
        TrainConfig(unroll=1)
    with pytest.raises(ValueError, match="unroll"):
        make_optimizer("hj", steps_per_epoch=1, epochs=1, unroll=0)


def test_until_stops_early_and_a_later_call_goes_on_exactly(digits, tmp_path):
    config = tiny(algo="sgd", epochs=2, batch_size=32)
    whole = fit(config, digits)
    ckpt = tmp_path / "run.npz"
    assert len(fit(config, digits, checkpoint=ckpt, until=1).history) == 1
    resumed = fit(config, digits, checkpoint=ckpt)
    assert_same_params(resumed.params, whole.params)
    assert resumed.history[METRICS].equals(whole.history[METRICS])


@pytest.mark.parametrize("kw, match", [
    (dict(algo="sgd", gamma="auto"), "`gamma` may be 'auto' for entropy_sgd and hj only"),
    (dict(algo="hj", gamma="adaptive"), "`gamma` may be 'auto'"),
    (dict(algo="hj", tolerance=0.1), "`tolerance` .* for entropy_sgd only"),
    (dict(algo="entropy_sgd", tolerance=0.0), "`tolerance` .* a number > 0"),
    (dict(algo="entropy_sgd", tolerance="tight"), "`tolerance` .* a number > 0"),
])
def test_self_tuning_options_are_refused_where_they_do_not_apply(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


@pytest.mark.parametrize("algo", ["entropy_sgd", "hj"])
def test_auto_scope_steps_as_the_scope_times_the_schedule(algo):
    """``_scaled`` with ``learning_rate=None`` is ``eta = s(n) gamma_n``: on a fixed scope it
    gives the updates of the optimiser built with that ``eta``, across a drop of ``s``."""
    from lesample import optim
    from lesample.train.algorithms import _scaled

    gamma, s = 0.5, lr_schedule(1.0, steps_per_epoch=1, drop_every=2, epochs=4)
    make = optim.entropy_sgd if algo == "entropy_sgd" else optim.hj
    scaled = _scaled(make(None, gamma, num_steps=3, seed=1), s)
    direct = make(lambda n: s(n) * gamma, gamma, num_steps=3, seed=1)

    def grad_fn(p, batch):
        return jax.tree_util.tree_map(lambda u: u**3 - u + batch, p)

    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    states = [scaled.init(params), direct.init(params)]
    ps = [params, params]
    for _ in range(4):  # steps 0-3: s drops from 1 to 0.2 at step 2
        out = []
        for i, tx in enumerate((scaled, direct)):
            u, states[i] = tx.update(params, states[i], ps[i], grad_fn=grad_fn,
                                     batches=jnp.full((3, 5), 0.1))
            ps[i] = optax_apply(ps[i], u)
            out.append(u)
        np.testing.assert_allclose(out[0]["w"], out[1]["w"], rtol=1e-6, atol=1e-7)


def optax_apply(p, u):
    import optax

    return optax.apply_updates(p, u)


def test_fit_with_auto_scope_and_adaptive_inner_loop_counts_what_it_spends(digits):
    """``gamma="auto"`` and a tolerance train (finite losses) and the effective epochs count
    the gradients actually spent: fewer than ``L`` per update with a loose tolerance, plus
    the curvature's Hessian-vector products (two gradients each)."""
    history = fit(tiny(gamma="auto", tolerance=0.5, epochs=1), digits).history
    row = history.iloc[-1]
    assert np.isfinite(row.train_loss) and np.isfinite(row.val_error)
    from lesample.train.algorithms import ADAPTIVE_CHUNK

    L, lanczos = ALGORITHMS["entropy_sgd"].num_grads, 10
    inner = row.num_grads / row.outer_steps - 2 * lanczos  # per update, one chain
    assert 4 * ADAPTIVE_CHUNK <= inner < L


def test_grads_per_update_counts_the_automatic_scopes_hvps_and_refuses_bad_input():
    from lesample.optim._auto_scope import AutoScope
    from lesample.train.algorithms import grads_per_update

    hvp = 2 * AutoScope().num_lanczos  # an HVP costs two gradients
    assert grads_per_update("entropy_sgd") == ALGORITHMS["entropy_sgd"].num_grads
    assert grads_per_update("hj", "auto") == ALGORITHMS["hj"].num_grads + hvp
    assert grads_per_update("entropy-sgd", 0.5) == ALGORITHMS["entropy_sgd"].num_grads
    with pytest.raises(ValueError, match="unknown algorithm 'adam'"):
        grads_per_update("adam")
    with pytest.raises(ValueError, match="`gamma` may be 'auto' for entropy_sgd and hj only"):
        grads_per_update("sgd", "auto")
