"""LeNet's max-pools (``lax.reduce_window`` against reshape-and-max) and convolutions
(``lax.conv_general_dilated`` against shifted slices and one matmul), measured in one run.

For each of LeNet's two pools (3x3 stride 3 on ``(128, 24, 24, 20)``, 2x2 stride 2 on
``(128, 8, 8, 50)``) and for a whole LeNet gradient step (training-mode cross-entropy,
batch 128), the jitted forward+backward time with each implementation (best of
``--repeats``, after a warm-up), their ratio, and whether outputs and gradients agree
exactly (``lesample.nets`` states when they must: window = stride, dividing H and W, and no
tie for a window's maximum, which random continuous inputs do not have). Then the LeNet
step with each convolution (``LeNet(conv=...)``), and their largest gradient difference
relative to the largest gradient (the two differ by rounding only).

Usage: ``python benchmarks/maxpool.py [--repeats N]``.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from flax import nnx

from lesample.nets import CONVS, POOLS, LeNet, functional_loss
from lesample.timing import best_time

BATCH = 128


def pool_problem(window, shape, key):
    """Per implementation: a jitted ``x -> (pool(x), vjp of a random cotangent)`` and its
    input."""
    kx, kc = jax.random.split(key)
    x = jax.random.normal(kx, shape)
    ct = jax.random.normal(kc, (shape[0], shape[1] // window, shape[2] // window, shape[3]))

    def make(pool):
        def forward_backward(x):
            out, vjp = jax.vjp(lambda x: pool(x, window), x)
            return out, vjp(ct)[0]

        return jax.jit(forward_backward)

    return {name: make(pool) for name, pool in POOLS.items()}, (x,)


def lenet_problem(key, option, names):
    """Per value of the LeNet ``option`` (``"pool"`` or ``"conv"``): a jitted LeNet ``params
    -> (loss, grad)`` (same weights, data and dropout masks) and its arguments."""
    kx, ky, kd = jax.random.split(key, 3)
    batch = (jax.random.uniform(kx, (BATCH, 28, 28, 1)),
             jax.random.randint(ky, (BATCH,), 0, 10), kd)
    fns, params = {}, None
    for name in names:
        loss, params = functional_loss(LeNet(**{option: name}, rngs=nnx.Rngs(0)))
        fns[name] = jax.jit(lambda p, loss=loss: jax.value_and_grad(loss)(p, batch))
    return fns, (params,)


def exact(a, b):
    return all(np.array_equal(u, v) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    key = jax.random.key(0)
    problems = {
        "pool 3x3/3 (128,24,24,20)": pool_problem(3, (BATCH, 24, 24, 20), key),
        "pool 2x2/2 (128,8,8,50)": pool_problem(2, (BATCH, 8, 8, 50), key),
        f"LeNet grad step, batch {BATCH}": lenet_problem(key, "pool", POOLS),
    }
    print(f"{jax.devices()[0].platform}, {jax.__version__}; forward+backward, best of "
          f"{args.repeats}\n")
    print(f"{'':32s} {'reduce_window':>14s} {'reshape':>10s} {'ratio':>7s}  exact")
    for label, (fns, fn_args) in problems.items():
        t = {name: best_time(fn, *fn_args, repeats=args.repeats) for name, fn in fns.items()}
        same = exact(fns["reduce_window"](*fn_args), fns["reshape"](*fn_args))
        print(f"{label:32s} {t['reduce_window'] * 1e3:11.2f} ms {t['reshape'] * 1e3:7.2f} ms "
              f"{t['reduce_window'] / t['reshape']:6.2f}x  {same}")
    fns, fn_args = lenet_problem(key, "conv", CONVS)
    t = {name: best_time(fn, *fn_args, repeats=args.repeats) for name, fn in fns.items()}
    grads = [jax.tree.leaves(fns[name](*fn_args)[1]) for name in ("xla", "matmul")]
    diff = max(float(np.abs(a - b).max()) for a, b in zip(*grads, strict=True))
    diff /= max(float(np.abs(a).max()) for a in grads[0])
    print(f"\n{'':32s} {'xla conv':>14s} {'matmul':>10s} {'ratio':>7s}  max rel diff")
    print(f"{f'LeNet grad step, batch {BATCH}':32s} {t['xla'] * 1e3:11.2f} ms "
          f"{t['matmul'] * 1e3:7.2f} ms {t['xla'] / t['matmul']:6.2f}x  {diff:.1e}")


if __name__ == "__main__":
    main()
