"""Models of the deep benchmarks (docs/deepnets.md): parameter counts derived from the
architectures, max-pool equivalence, the train/eval modes and the pure API."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from lesample.nets import (
    AllCNN,
    Dropout,
    LeNet,
    MnistFC,
    conv_shifted_matmul,
    functional,
    functional_loss,
    max_pool,
    max_pool_reshape,
    num_params,
)

# ---------------------------------------------------------------------------------------------
# Parameter counts: weights + biases of each layer, plus BatchNorm scale and bias.


def fc(n_in, n_out):
    return n_in * n_out + n_out


def conv(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def bn(c):
    return 2 * c


MNISTFC_COUNT = fc(784, 1024) + bn(1024) + fc(1024, 1024) + bn(1024) + fc(1024, 10)
# 28 -conv5-> 24 -pool3-> 8 -conv5-> 4 -pool2-> 2: fc500 sees 50 * 2 * 2 features.
LENET_COUNT = conv(5, 1, 20) + bn(20) + conv(5, 20, 50) + bn(50) + fc(50 * 2 * 2, 500) + fc(500, 10)
ALLCNN_COUNT = (
    conv(3, 3, 96) + bn(96) + 2 * (conv(3, 96, 96) + bn(96))
    + conv(3, 96, 192) + bn(192) + 4 * (conv(3, 192, 192) + bn(192))
    + conv(1, 192, 10) + bn(10)
)


def abstract(factory):
    """The model with abstract arrays: counts without initialising 1.7M weights."""
    return nnx.eval_shape(lambda: factory(rngs=nnx.Rngs(0)))


def test_counts_match_the_paper():
    assert MNISTFC_COUNT == 1_867_786  # paper: "1.86 million" (1,863,690 without BN)
    assert LENET_COUNT == 131_220  # paper: exactly 131,220
    assert ALLCNN_COUNT == 1_667_166  # paper: "1.67 million"


@pytest.mark.parametrize(
    "factory, count",
    [
        (MnistFC, MNISTFC_COUNT),
        (LeNet, LENET_COUNT),
        (lambda rngs: LeNet(fc_batchnorm=True, rngs=rngs), LENET_COUNT + bn(500)),
        (AllCNN, ALLCNN_COUNT),
    ],
    ids=["mnistfc", "lenet", "lenet-fc-bn", "allcnn"],
)
def test_parameter_count_from_the_architecture(factory, count):
    assert num_params(abstract(factory)) == count


def test_allcnn_spatial_sizes():
    """32 -> 32 -> 32 -> 16 (block96) -> 16 -> 16 -> 8 (block192) -> 8 -> 8 -> 8, and the
    mean-pool averages a 10 x 8 x 8 map."""
    def feature_maps():
        x = jnp.zeros((1, 32, 32, 3))
        maps = []
        for layer in AllCNN(rngs=nnx.Rngs(0)).convs:
            x = layer(x)
            maps.append(x)
        return maps

    sizes = [m.shape[1:] for m in jax.eval_shape(feature_maps)]
    assert [s[0] for s in sizes] == [32, 32, 16, 16, 16, 8, 8, 8, 8]
    assert sizes[-1] == (8, 8, 10)


# ---------------------------------------------------------------------------------------------
# Max-pooling: reduce_window and reshape-and-max.


@pytest.mark.parametrize("shape, window", [((4, 24, 24, 20), 3), ((4, 4, 4, 50), 2)])
def test_max_pool_forms_agree_exactly(shape, window):
    x = jax.random.normal(jax.random.key(0), shape)
    # No ties: every window has a single maximum (continuous draws; checked, not assumed).
    n, h, w, c = shape
    patches = np.asarray(x).reshape(n, h // window, window, w // window, window, c)
    top2 = np.sort(patches.transpose(0, 1, 3, 5, 2, 4).reshape(-1, window * window), axis=1)
    assert np.all(top2[:, -1] > top2[:, -2])

    y_ref, vjp_ref = jax.vjp(lambda u: max_pool(u, window), x)
    y_new, vjp_new = jax.vjp(lambda u: max_pool_reshape(u, window), x)
    np.testing.assert_array_equal(y_new, y_ref)
    cotangent = jax.random.normal(jax.random.key(1), y_ref.shape)
    np.testing.assert_array_equal(vjp_new(cotangent)[0], vjp_ref(cotangent)[0])


def test_max_pool_reshape_falls_back_when_the_window_does_not_divide():
    x = jax.random.normal(jax.random.key(0), (2, 7, 8, 3))
    assert max_pool_reshape(x, 3).shape == (2, 2, 2, 3)
    np.testing.assert_array_equal(max_pool_reshape(x, 3), max_pool(x, 3))


@pytest.mark.parametrize("stride, padding", [
    (1, "VALID"), (2, "VALID"), (1, "SAME"), (2, "SAME"), (3, ((2, 1), (0, 2))),
    (1, ((-1, 0), (1, 1))),  # negative padding crops: the fallback
])
def test_conv_shifted_matmul_is_lax_conv(stride, padding):
    """The matmul form (any stride, zero padding) and its fallback (negative padding) against
    XLA's convolution, values and both gradients, to float32 rounding: sums of
    5 * 5 * 20 = 500 products."""
    kx, kw = jax.random.split(jax.random.key(0))
    x, w = jax.random.normal(kx, (3, 12, 12, 20)), jax.random.normal(kw, (5, 5, 20, 7))
    dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))

    def ref(x, w):
        return jax.lax.conv_general_dilated(x, w, (stride, stride), padding,
                                            dimension_numbers=dn)

    def new(x, w):
        return conv_shifted_matmul(x, w, (stride, stride), padding, dimension_numbers=dn)

    np.testing.assert_allclose(new(x, w), ref(x, w), rtol=1e-5, atol=1e-4)
    ct = jax.random.normal(jax.random.key(2), ref(x, w).shape)
    for a, b in zip(jax.vjp(new, x, w)[1](ct), jax.vjp(ref, x, w)[1](ct), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("option", ["pool", "conv"])
def test_lenet_rejects_an_unknown_implementation(option):
    with pytest.raises(ValueError, match=f"{option} must be one of"):
        LeNet(**{option: "fft"}, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="conv must be one of"):
        AllCNN(conv="fft", rngs=nnx.Rngs(0))


def test_conv_shifted_matmul_falls_back_for_1d_convolutions():
    x, w = jnp.ones((2, 9, 3)), jnp.ones((3, 3, 4))
    dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHC", "HIO", "NHC"))
    np.testing.assert_array_equal(
        conv_shifted_matmul(x, w, (1,), "VALID", dimension_numbers=dn),
        jax.lax.conv_general_dilated(x, w, (1,), "VALID", dimension_numbers=dn))


@pytest.mark.parametrize("option, forms", [("pool", ("reshape", "reduce_window")),
                                           ("conv", ("matmul", "xla"))])
def test_lenet_implementation_choice_does_not_change_the_network(option, forms):
    check_same_network(lambda form: LeNet(**{option: form}, rngs=nnx.Rngs(0)), forms,
                       (8, 28, 28, 1))


def test_allcnn_convolution_choice_does_not_change_the_network():
    """Strided, padded 3x3 convolutions and the 1x1 one, as matmuls and as XLA's; the
    default is the matmul form on the CPU (this suite's backend)."""
    assert jax.default_backend() != "cpu" or (
        small_allcnn().convs[0].conv_general_dilated is conv_shifted_matmul)
    check_same_network(lambda form: small_allcnn(conv=form), ("matmul", "xla"),
                       (8, 32, 32, 3))


def check_same_network(make, forms, shape):
    """Loss and gradients of ``make(form)`` agree across ``forms`` on one batch."""
    x = jax.random.uniform(jax.random.key(0), shape)
    batch = (x, jnp.arange(shape[0]) % 10, jax.random.key(1))
    grads = []
    for form in forms:
        loss, params = functional_loss(make(form))
        grads.append(jax.jit(jax.value_and_grad(loss))(params, batch))
    (l1, g1), (l2, g2) = grads
    np.testing.assert_allclose(l1, l2, rtol=1e-6)
    # atol: a convolution's bias feeds BatchNorm, so its true gradient is 0 and what is
    # computed is rounding noise (~1e-7 here, against gradients of order 0.1).
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Modes: dropout from explicit keys, BatchNorm batch/running statistics.


def batch_stats(model):
    return jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))


def small_allcnn(**kw):
    return AllCNN(widths=(4, 8), rngs=nnx.Rngs(0), **kw)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: MnistFC(hidden=32, rngs=nnx.Rngs(0)), (6, 784)),
        (lambda: LeNet(rngs=nnx.Rngs(0)), (6, 28, 28, 1)),
        (small_allcnn, (6, 32, 32, 3)),
    ],
    ids=["mnistfc", "lenet", "allcnn"],
)
def test_train_and_eval_modes(make, shape):
    model = make()
    x = jax.random.uniform(jax.random.key(0), shape)
    before = batch_stats(model)

    # Evaluation: deterministic, running statistics untouched.
    out = model(x)
    assert out.shape == (6, 10)
    np.testing.assert_array_equal(model(x), out)
    jax.tree.map(np.testing.assert_array_equal, batch_stats(model), before)

    # Training: the key alone decides the dropout masks (batch statistics do not depend on
    # the running ones), and each call moves the running statistics.
    k1, k2 = jax.random.key(1), jax.random.key(2)
    t1 = model(x, k1)
    after_one = batch_stats(model)
    assert any(not np.array_equal(a, b) for a, b in
               zip(jax.tree.leaves(after_one), jax.tree.leaves(before), strict=True))
    np.testing.assert_array_equal(model(x, k1), t1)
    assert not np.allclose(model(x, k2), t1)
    assert not np.allclose(model(x), out)  # the running statistics have moved


def test_running_statistics_update_rule():
    """s <- 0.9 s + 0.1 * batch statistic (PyTorch momentum 0.1), in a training call only."""
    model = MnistFC(hidden=16, rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(0), (32, 784))
    h = np.asarray(model.fc1(x))  # dropout on the input is off with train=True, key=None
    model(x, train=True)
    np.testing.assert_allclose(model.bn1.mean[...], 0.1 * h.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.bn1.var[...], 0.9 + 0.1 * h.var(0), rtol=1e-5)


def test_dropout_rates_are_parameters():
    x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 3))
    off = small_allcnn(input_dropout=0.0, block_dropout=0.0)
    np.testing.assert_allclose(off(x, jax.random.key(1)), off(x, jax.random.key(2)), rtol=1e-6)
    np.testing.assert_allclose(off(x, jax.random.key(1)), off(x, train=True), rtol=1e-6)
    only_input = small_allcnn(input_dropout=0.5, block_dropout=0.0)
    assert not np.allclose(only_input(x, jax.random.key(1)), only_input(x, jax.random.key(2)))
    lenet = LeNet(dropout=0.0, rngs=nnx.Rngs(0))
    y = x[..., :1][:, :28, :28]
    np.testing.assert_allclose(lenet(y, jax.random.key(1)), lenet(y, jax.random.key(2)),
                               rtol=1e-6)


@pytest.mark.parametrize("rate", [0.2, 0.25, 0.5])
def test_dropout_keeps_its_rate_and_is_unbiased(rate):
    """``Dropout``'s 16-bit masks: the kept share is the threshold's probability ``t / 2^16``
    (within 2^-17 of ``1 - rate``), tested with a 5-sigma binomial bound; kept units are
    scaled by ``2^16 / t``, so the output's mean over masks equals ``x`` exactly in
    expectation (checked on the all-ones input within the same bound); odd sizes work."""
    drop = Dropout(rate)
    keep = drop.threshold / 2**16
    assert abs(keep - (1 - rate)) <= 2**-17
    n = 1_000_001  # odd: the last 32-bit word gives one mask of its two
    out = np.asarray(drop(jnp.ones(n), jax.random.key(3)), np.float64)
    kept = np.mean(out != 0)
    sigma = np.sqrt(keep * (1 - keep) / n)
    assert abs(kept - keep) < 5 * sigma, (kept, keep)
    np.testing.assert_allclose(out[out != 0], 2**16 / drop.threshold, rtol=1e-7)
    assert abs(out.mean() - 1.0) < 5 * sigma / keep
    # Units i and i + m (m = 500,001 words) take the low and high halves of one word: they
    # must be independent, both kept with probability keep^2 (same 5-sigma bound).
    m = -(-n // 2)
    both = np.mean((out[: n - m] != 0) & (out[m:] != 0))
    assert abs(both - keep**2) < 5 * np.sqrt(keep**2 * (1 - keep**2) / (n - m)), (both, keep)
    x = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(drop(x), x)  # no key: evaluation mode
    np.testing.assert_array_equal(Dropout(0.0)(x, jax.random.key(0)), x)
    for bad in (1.0, -0.1, 1 - 2**-18, "0.2", True, float("nan")):
        with pytest.raises(ValueError, match="rate"):
            Dropout(bad)


def test_flat_and_image_inputs_agree():
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
    for model in (LeNet(rngs=nnx.Rngs(0)), MnistFC(hidden=16, rngs=nnx.Rngs(0))):
        np.testing.assert_array_equal(model(x.reshape(3, 784)), model(x))


# ---------------------------------------------------------------------------------------------
# The pure API.


def test_functional_matches_the_eager_model():
    model = LeNet(fc_batchnorm=True, rngs=nnx.Rngs(0))
    x = jax.random.uniform(jax.random.key(0), (8, 28, 28, 1))
    labels = jnp.arange(8) % 10
    batch = (x, labels, jax.random.key(3))
    f = functional(model)
    before = batch_stats(model)

    # loss: the training-mode cross-entropy, and it leaves every statistic alone.
    loss = jax.jit(f.loss)
    value = loss(f.params, batch)
    np.testing.assert_array_equal(loss(f.params, batch), value)
    jax.tree.map(np.testing.assert_array_equal, batch_stats(model), before)
    twin = nnx.clone(model)
    logits = twin(x, batch[2])
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    np.testing.assert_allclose(value, expected, rtol=1e-5)

    # forward_with_stats: the eager training call, statistics returned instead of stored.
    out, new_stats = jax.jit(f.forward_with_stats)(f.params, f.batch_stats, batch)
    # Jitted and eager runs sum in different orders: rounding errors scale with the terms of
    # the sums, not with a logit that cancels to near 0, so compare norm-wise at 1e-5.
    np.testing.assert_allclose(out, logits, rtol=0, atol=1e-5 * np.abs(logits).max())
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0,
                                                         atol=1e-5 * np.abs(b).max()),
                 batch_stats_of(new_stats), batch_stats(twin))
    jax.tree.map(np.testing.assert_array_equal, batch_stats(model), before)

    # loss_with_stats under value_and_grad; predict evaluates with the statistics given.
    (l2, stats2), grads = jax.jit(jax.value_and_grad(f.loss_with_stats, has_aux=True))(
        f.params, f.batch_stats, batch)
    np.testing.assert_allclose(l2, value, rtol=1e-5)
    g_ref = jax.grad(f.loss)(f.params, batch)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(g_ref), strict=True):
        # Norm-wise again (fc1: entries of 2.4e-4 differed by 2.5e-6 with other dropout
        # masks, 2e-5 of the leaf's largest). The floor 1e-6 is for the biases before a
        # BatchNorm: their exact gradient is 0 (the mean is subtracted), what is left is
        # rounding (~1e-7).
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 + 1e-4 * np.abs(b).max())
    np.testing.assert_allclose(f.predict(f.params, stats2, x), twin(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f.merge(f.params, stats2)(x), twin(x), rtol=1e-5, atol=1e-6)


def batch_stats_of(state):
    return jax.tree.map(np.asarray, state)


def test_functional_loss_for_the_kernel_benchmark():
    """benchmarks/kernels.py: ``functional_loss(MnistFC(rngs=nnx.Rngs(0)))`` on flat batches."""
    loss, params = functional_loss(MnistFC(rngs=nnx.Rngs(0)))
    batch = (jax.random.normal(jax.random.key(0), (16, 784)), jnp.arange(16) % 10,
             jax.random.key(1))
    value, grads = jax.jit(jax.value_and_grad(loss))(params, batch)
    assert np.isfinite(value)
    assert sum(g.size for g in jax.tree.leaves(grads)) == MNISTFC_COUNT
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
