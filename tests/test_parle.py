"""Elastic-SGD and Parle over replica-stacked parameters: reductions to the single-replica
optimisers (bit for bit where the arithmetic is the same), the coupling's closed form,
scoping schedules, gradient counts and argument checks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lesample import optim

U = 2.0 ** -24  # unit roundoff of float32

_X = jax.random.normal(jax.random.PRNGKey(1), (32, 3))
_Y = _X @ jnp.array([1.0, -2.0, 0.5]) + 0.3


def _loss(x, rows):
    pred = _X[rows] @ x["w"] + x["b"]
    return 0.5 * jnp.mean((pred - _Y[rows]) ** 2) + 0.1 * jnp.sum(jnp.sin(3.0 * x["w"]))


def grad_fn(x, key_or_rows):
    """A mini-batch gradient: 8 rows drawn by a key, or given as a batch of rows."""
    rows = key_or_rows
    if jnp.issubdtype(jnp.asarray(key_or_rows).dtype, jnp.uint32):
        rows = jax.random.randint(key_or_rows, (8,), 0, 32)
    return jax.grad(_loss)(x, rows)


def start(n):
    """Replicas that start apart (a deterministic spread), so that the coupling acts."""
    x0 = {"w": jnp.array([0.2, -0.1, 0.4]), "b": jnp.array(0.05)}
    stack = optim.replicate(x0, n)
    shift = jnp.linspace(-0.3, 0.3, n)
    return jax.tree_util.tree_map(
        lambda u: u + shift.reshape((n,) + (1,) * (u.ndim - 1)), stack)


def run(tx, params, steps, inputs):
    """``steps`` updates; ``inputs(k)`` gives the update's keyword arguments."""
    state = tx.init(params)
    for k in range(steps):
        updates, state = tx.update(None, state, params, grad_fn=grad_fn, **inputs(k))
        params = optax.apply_updates(params, updates)
    return params, state


def replica(tree, a):
    return jax.tree_util.tree_map(lambda u: u[a], tree)


def assert_equal(a, b):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))


KEYS = jax.random.split(jax.random.PRNGKey(7), 4)
ES = dict(gamma=0.5, num_steps=5, step_size=0.05, beta=1e4, momentum=0.9)


def test_parle_one_replica_is_entropy_sgd_bit_for_bit():
    x, state = run(optim.parle(rho=0.3, **ES), start(1), 4, lambda k: {"key": KEYS[k]})
    y, es_state = run(optim.entropy_sgd(**ES), replica(start(1), 0), 4,
                      lambda k: {"key": jax.random.split(KEYS[k], 1)[0]})
    assert_equal(replica(x, 0), y)
    assert_equal(replica(state.momentum, 0), es_state.momentum)
    assert int(state.num_grads.sum()) == int(es_state.num_grads) == 4 * 5


def test_parle_uncoupled_replicas_are_entropy_sgd_runs_bit_for_bit():
    """rho = inf, batches path: replica a is entropy_sgd fed batches[:, a] and key rng[a]."""
    n, L = 3, 5
    rows = jax.random.randint(jax.random.PRNGKey(3), (4, L, n, 8), 0, 32)
    tx = optim.parle(rho=float("inf"), **ES)
    x, state = run(tx, start(n), 4, lambda k: {"batches": rows[k]})
    rng0 = tx.init(start(n)).rng
    for a in range(n):
        es = optim.entropy_sgd(**ES)
        y, s = replica(start(n), a), es.init(replica(start(n), a))._replace(rng=rng0[a])
        for k in range(4):
            u, s = es.update(None, s, y, grad_fn=grad_fn, batches=rows[k, :, a])
            y = optax.apply_updates(y, u)
        assert_equal(replica(x, a), y)
        np.testing.assert_array_equal(state.rng[a], s.rng)


def test_elastic_sgd_one_replica_and_uncoupled_replicas_are_sgd_bit_for_bit():
    for n, rho in ((1, 0.3), (3, float("inf"))):
        x, _ = run(optim.elastic_sgd(0.1, rho), start(n), 4, lambda k: {"key": KEYS[k]})
        for a in range(n):
            y, _ = run(optim.sgd(0.1), replica(start(n), a), 4,
                       lambda k, a=a, n=n: {"key": jax.random.split(KEYS[k], n)[a]})
            assert_equal(replica(x, a), y)


def _one_step_bound(x, g, g_tot, eta, momentum, s):
    """Elementwise bound on |x'_parle - x'_elastic| after one step from ``x``. The local-
    entropy gradient ``(x - fl(x - s g)) / s`` is ``g`` up to ``U (|x|/s + 3|g|)`` (rounding
    of ``s g``, of the difference, of the division); adding the elastic term and the first
    Nesterov step ``eta (1 + delta) g_tot`` round at ``2 U |g_tot|`` each, and ``x'`` at
    ``2 U |x'|``. Twice this first-order sum bounds the second-order terms too."""
    x, g, g_tot = (np.abs(np.asarray(t)) for t in (x, g, g_tot))
    step = eta * (1 + momentum)
    return 2 * (step * (U * (x / s + 3 * g) + 2 * U * g_tot) + 2 * U * (x + step * g_tot))


@pytest.mark.parametrize("n", [1, 3])
def test_parle_L1_without_local_entropy_is_elastic_sgd(n):
    """L = 1, no noise, the last iterate and inner step = gamma: (x - y_1)/gamma is the
    mini-batch gradient; n = 1 is then plain SGD."""
    s, eta, rho = 0.3, 0.1, 0.3  # s not a power of 2: x - s g rounds
    tx = optim.parle(eta, gamma=s, rho=rho, num_steps=1, step_size=s, beta=float("inf"),
                     estimator="last", momentum=0.9)
    x, _ = run(tx, start(n), 1, lambda k: {"key": KEYS[k]})
    y, _ = run(optim.elastic_sgd(eta, rho), start(n), 1, lambda k: {"key": KEYS[k]})
    keys = jax.random.split(KEYS[0], n)  # replica a's key; its gradient's key below
    for a in range(n):
        x0 = replica(start(n), a)
        g = grad_fn(x0, jax.random.split(jax.random.split(keys[a])[1], 1)[0])
        if n == 1:  # and elastic_sgd with one replica is sgd, bit for bit (test above)
            z, _ = run(optim.sgd(eta), x0, 1, lambda k: {"key": keys[0]})
            assert_equal(replica(y, 0), z)
        pull = jax.tree_util.tree_map(lambda u, m, a=a: (u[a] - m[0]) / rho, start(n),
                                      optim.replica_mean(start(n)))
        g_tot = jax.tree_util.tree_map(jnp.add, g, pull)
        for u, v, x0_leaf, g_leaf, t_leaf in zip(
                *(jax.tree_util.tree_leaves(t) for t in (replica(x, a), replica(y, a), x0, g,
                                                          g_tot)), strict=True):
            bound = _one_step_bound(x0_leaf, g_leaf, t_leaf, eta, 0.9, s)
            assert np.all(np.abs(np.asarray(u) - np.asarray(v)) <= bound)


@pytest.mark.parametrize("make", [
    lambda eta, rho: optim.elastic_sgd(eta, rho, momentum=0.0),
    lambda eta, rho: optim.parle(eta, gamma=1.0, rho=rho, num_steps=3, beta=float("inf"),
                                 momentum=0.0),
])
def test_coupling_contracts_the_spread_in_closed_form(make):
    """f = 0: the mean is invariant and x_a - xbar shrinks by (1 - eta/rho) per round
    (Parle's inner loop then stays at x_a exactly, so its local-entropy term is 0)."""
    eta, rho, n, steps = 0.1, 0.4, 4, 6
    x = start(n)
    tx, zero = make(eta, rho), lambda p, b: jax.tree_util.tree_map(jnp.zeros_like, p)
    state = tx.init(x)
    for k in range(steps):
        updates, state = tx.update(None, state, x, grad_fn=zero, key=KEYS[k % 4])
        x = optax.apply_updates(x, updates)
    x0, mean0 = start(n), optim.replica_mean(start(n))
    for u, u0, m0, m in zip(*(jax.tree_util.tree_leaves(t) for t in
                              (x, x0, mean0, optim.replica_mean(x))), strict=True):
        expected = m0 + (1 - eta / rho) ** steps * (u0 - m0)
        # each round rounds the difference, the division, the step and the sum: ~6 U |x|
        tol = 6 * steps * U * float(np.max(np.abs(u0))) * 2
        np.testing.assert_allclose(u, expected, rtol=0, atol=tol)
        np.testing.assert_allclose(m, m0, rtol=0, atol=tol)


def test_scoping_schedules_of_gamma_and_rho_are_evaluated_at_the_round_count():
    gamma_s, rho_s = optim.scoping(0.5, 0.2), optim.scoping(0.4, 0.3)
    kw = dict(num_steps=3, step_size=0.05, beta=1e4)
    x, _ = run(optim.parle(gamma=gamma_s, rho=rho_s, **kw), start(3), 3,
               lambda k: {"key": KEYS[k]})
    y, state = start(3), None
    for k in range(3):  # the same rounds with the schedules' values as constants
        tx = optim.parle(gamma=float(gamma_s(k)), rho=float(rho_s(k)), **kw)
        state = tx.init(y) if state is None else state
        updates, state = tx.update(None, state, y, grad_fn=grad_fn, key=KEYS[k])
        y = optax.apply_updates(y, updates)
    # XLA divides by a constant as a multiply by its reciprocal: 1 ulp per division, a few
    # ulps after three rounds; a schedule read at another count moves gamma by 20% per round.
    for u, v in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y), strict=True):
        np.testing.assert_allclose(u, v, rtol=32 * U, atol=32 * U)


def test_gradient_counts_per_replica():
    _, state = run(optim.parle(rho=0.3, **ES), start(3), 2, lambda k: {"key": KEYS[k]})
    np.testing.assert_array_equal(state.num_grads, [10, 10, 10])
    assert int(state.count) == 2
    _, state = run(optim.elastic_sgd(0.1, 0.3), start(2), 3, lambda k: {"key": KEYS[k]})
    np.testing.assert_array_equal(state.num_grads, [3, 3])


def test_elastic_sgd_takes_stacked_gradients_like_optax():
    x = start(3)
    grads = jax.vmap(grad_fn)(x, jax.random.split(KEYS[0], 3))
    tx = optim.elastic_sgd(0.1, float("inf"), momentum=0.0)
    updates, _ = tx.update(grads, tx.init(x), x)
    expected, _ = optax.sgd(0.1).update(grads, optax.sgd(0.1).init(x))
    assert_equal(updates, expected)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="`rho`.*required"):
        optim.parle(gamma=0.5)
    for bad in (0.0, -1.0, float("nan"), "big"):
        with pytest.raises((ValueError, TypeError), match="`rho`"):
            optim.elastic_sgd(0.1, bad)
    with pytest.raises(ValueError, match="same leading axis n"):
        optim.elastic_sgd(0.1, 0.3).init({"w": jnp.zeros((3, 2)), "b": jnp.zeros((2,))})
    with pytest.raises(ValueError, match="same leading axis n"):
        optim.elastic_sgd(0.1, 0.3).init({"w": jnp.zeros((3, 2)), "b": jnp.zeros(())})
    tx = optim.parle(rho=0.3, **ES)
    state = tx.init(start(2))
    with pytest.raises(ValueError, match="holds 2 replicas but `params` 3"):
        tx.update(None, state, start(3), grad_fn=grad_fn, key=KEYS[0])
    with pytest.raises(ValueError, match="leading axis 5"):
        tx.update(None, state, start(2), grad_fn=grad_fn,
                  batches=jnp.zeros((2, 5, 8), jnp.int32))
    with pytest.raises(TypeError, match="`mesh` must be a jax.sharding.Mesh"):
        optim.elastic_sgd(0.1, 0.3, mesh="gpu").update(None, optim.elastic_sgd(0.1, 0.3).init(
            start(2)), start(2), grad_fn=grad_fn, key=KEYS[0])
    with pytest.raises(ValueError, match="`n` must be an integer >= 1"):
        optim.replicate(start(1), 0)


def test_train_config_checks_replicas():
    from lesample.train import TrainConfig

    with pytest.raises(ValueError, match="`replicas` applies to parle and elastic_sgd"):
        TrainConfig(algo="sgd", replicas=3)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="`replicas` must be an integer >= 1"):
            TrainConfig(algo="parle", replicas=bad)


@pytest.mark.slow
def test_fit_counts_the_gradients_of_all_replicas():
    """Elastic-SGD with n = 2 on 256 rows, B = 32: an effective epoch is round(256 / (32 x
    1 x 2)) = 4 rounds of one gradient per replica (8 gradients = one pass); validation at
    the replica mean, returned unstacked."""
    from lesample.data import load_dataset
    from lesample.train import TrainConfig, fit

    data = load_dataset("digits", limit=256)
    result = fit(TrainConfig(model="mnistfc", algo="elastic-sgd", replicas=2, epochs=1,
                             batch_size=32, eval_rows=128), data)
    row = result.history.iloc[-1]
    assert (row.replicas, row.outer_steps, row.num_grads) == (2, 4, 8)
    assert row.effective_epochs == 8 * 32 / 256
    assert np.isfinite(row.val_error)
    shapes = [np.shape(u) for u in jax.tree_util.tree_leaves(result.params)]
    x0 = jax.tree_util.tree_leaves(result.model.params)
    assert shapes == [np.shape(u) for u in x0]


def _history(algos, epochs, seeds=1, replicas=1):
    """Per-epoch rows of the deep-nets study for ``algos`` (errors fall with the epoch)."""
    import pandas as pd

    return pd.DataFrame([
        dict(model="mnistfc", algo=a, seed=s, epoch=e, replicas=replicas, outer_steps=10 * e,
             num_grads=100 * e, effective_epochs=float(e), train_loss=1.0 / e,
             train_error=0.3 / e, val_loss=1.0 / e, val_error=0.3 / e + 0.01 * i,
             train_seconds=2.0, eval_seconds=0.5, dataset="fashion-mnist", noise="rademacher")
        for i, a in enumerate(algos) for s in range(seeds) for e in range(1, epochs + 1)])


def test_deepnets_report_of_replica_algorithms_alone_and_merged(tmp_path):
    """A run of Parle and Elastic-SGD alone (no SGD baseline) gets its report; merged into
    a finished run of the others (``python -m studies.deepnets.report --add``), its cells
    join the table, and while they are short of the budget the others' full-budget table
    stays on the page."""
    import pandas as pd

    from studies.deepnets.report import main, merge_runs, write_report

    settings = dict(epochs=4, batch_size=100, drop_every=2)
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    replica = _history(["parle", "elastic_sgd"], epochs=2, replicas=3)
    replica.to_csv(ours / "results.csv", index=False)
    write_report(replica, pd.DataFrame(), ours, mode="full", settings=settings,
                 dataset="fashion-mnist", num_train=1000)
    assert "No SGD baseline in this run" in (ours / "report.html").read_text()
    assert len(pd.read_csv(ours / "epochs_to_sgd.csv")) == 0

    others = _history(["sgd", "entropy_sgd"], epochs=4, seeds=2).drop(columns="replicas")
    stale = others[(others.algo == "sgd") & (others.seed == 0)].assign(algo="parle")
    pd.concat([others, stale]).to_csv(theirs / "results.csv", index=False)
    results, _ = merge_runs([theirs, ours])
    assert sorted(results.groupby("algo").seed.nunique().items()) == [
        ("elastic_sgd", 1), ("entropy_sgd", 2), ("parle", 1), ("sgd", 2)]
    assert results[results.algo == "parle"].epoch.max() == 2  # ours replaced the stale cell
    assert set(results.replicas) == {1, 3}

    main([str(theirs), "--mode", "quick", "--add", str(ours)])
    summary = pd.read_csv(theirs / "summary.csv")
    assert set(summary.algo) == {"sgd", "entropy_sgd", "parle", "elastic_sgd"}
    assert set(summary.effective_epochs) == {2.0}  # all compared at the epoch all reached
    html = (theirs / "report.html").read_text()
    assert "stopped before the budget" in html and "The cells that reached the budget" in html
    assert "Parle" in html and "wall-clock" in html
