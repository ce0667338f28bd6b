"""Loaders of the deep benchmarks (docs/deepnets.md): files written here in the real formats read
back exactly, bad files rejected with clear errors, GCN + ZCA against their definitions,
digits, and the real Fashion-MNIST where Debian's package is installed."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest

from lesample import data
from lesample.data import (
    FASHION_MNIST_DEBIAN_DIR,
    ZCA,
    gcn,
    gcn_zca,
    load_dataset,
    read_cifar10,
    read_idx,
    upsample,
)

# ---------------------------------------------------------------------------------------------
# IDX files, written by hand: magic 00 00 type ndim, big-endian uint32 sizes, data.


def idx_bytes(array: np.ndarray) -> bytes:
    code = {np.dtype("u1"): 0x08, np.dtype("i2"): 0x0B, np.dtype("f4"): 0x0D}[array.dtype]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write(path, content: bytes, gz: bool):
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def mnist_arrays(seed=0, n_train=7, n_test=3):
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_mnist(folder, arrays, form="raw"):
    """``form``: "raw", "gz" (``name.gz``) or "gz-unnamed" (gzip content, raw name)."""
    for stem, array in arrays.items():
        name = f"{stem}.gz" if form == "gz" else stem
        write(folder / name, idx_bytes(array), gz=form != "raw")
    return folder


@pytest.mark.parametrize("form", ["raw", "gz", "gz-unnamed"])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_dataset_reads_back_exactly(tmp_path, form, name):
    arrays = mnist_arrays()
    ds = load_dataset(name, write_mnist(tmp_path, arrays, form), verify=False)
    assert ds.name == name
    for got, stem in zip(ds[1:], arrays, strict=True):
        want = arrays[stem]
        if want.ndim == 3:
            assert got.dtype == np.float32 and got.shape == (*want.shape, 1)
            np.testing.assert_array_equal(got[..., 0], want.astype(np.float32) / 255)
        else:
            assert got.dtype == np.int32
            np.testing.assert_array_equal(got, want)


def test_limit_keeps_the_first_training_images_only(tmp_path):
    folder = write_mnist(tmp_path, mnist_arrays())
    full = load_dataset("mnist", folder, verify=False)
    cut = load_dataset("mnist", folder, limit=4, verify=False)
    np.testing.assert_array_equal(cut.train_images, full.train_images[:4])
    np.testing.assert_array_equal(cut.train_labels, full.train_labels[:4])
    np.testing.assert_array_equal(cut.test_images, full.test_images)
    assert len(load_dataset("mnist", folder, limit=100, verify=False).train_images) == 7
    with pytest.raises(ValueError, match="limit must be a positive"):
        load_dataset("mnist", folder, limit=0, verify=False)


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.int16).reshape(2, 3, 4) - 12,
    np.linspace(-1, 1, 10, dtype=np.float32),
])
def test_read_idx_other_types_and_native_byte_order(tmp_path, array):
    got = read_idx(write(tmp_path / "x.idx", idx_bytes(array), gz=False))
    assert got.dtype == array.dtype and got.dtype.isnative
    np.testing.assert_array_equal(got, array)


def test_read_idx_verifies_the_md5_of_the_content_raw_or_gzipped(tmp_path):
    content = idx_bytes(np.arange(12, dtype=np.uint8).reshape(3, 4))
    md5 = hashlib.md5(content).hexdigest()
    for gz in (False, True):  # the same checksum whatever the compression
        np.testing.assert_array_equal(
            read_idx(write(tmp_path / "ok", content, gz), md5=md5).ravel(), np.arange(12))
    changed = content[:-1] + b"\x63"
    path = write(tmp_path / "changed", changed, gz=True)
    with pytest.raises(ValueError, match=r"changed: checksum mismatch.*verify=False"):
        read_idx(path, md5=md5)


def test_official_checksums_are_checked_by_default(tmp_path):
    write_mnist(tmp_path, mnist_arrays(), "gz")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte\.gz: checksum mismatch .*"
                                         r"6bbc9ace898e44ae57da46a324031adb"):
        load_dataset("mnist", tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-5], r"truncated: the header \(7, 28, 28\)"),
    (lambda b: b + b"\0", "longer than its header says"),
    (lambda b: b"\x00\x01" + b[2:], "not an IDX file"),
    (lambda b: b[:6], "truncated IDX header"),
    (lambda b: b"", "magic number missing"),
])
def test_damaged_idx_files_are_named_in_a_value_error(tmp_path, damage, message):
    write_mnist(tmp_path, mnist_arrays())
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message) as err:
        load_dataset("mnist", tmp_path, verify=False)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("damage", [
    lambda b: b[: len(b) // 2],  # truncated download
    lambda b: b[:40] + bytes(x ^ 0xFF for x in b[40:80]) + b[80:],  # flipped bytes
])
def test_damaged_gzip_is_a_value_error(tmp_path, damage):
    write_mnist(tmp_path, mnist_arrays(), "gz")
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz: corrupt or truncated gzip"):
        load_dataset("mnist", tmp_path, verify=False)


def test_inconsistent_idx_files(tmp_path):
    arrays = mnist_arrays()
    arrays["train-labels-idx1-ubyte"] = arrays["train-labels-idx1-ubyte"][:6]
    write_mnist(tmp_path, arrays)
    with pytest.raises(ValueError, match=r"train-labels-idx1-ubyte: \(6,\) labels for 7 images"):
        load_dataset("mnist", tmp_path, verify=False)

    arrays = mnist_arrays()
    arrays["t10k-labels-idx1-ubyte"][0] = 10
    write_mnist(tmp_path, arrays)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte: labels outside 0..9"):
        load_dataset("mnist", tmp_path, verify=False)

    arrays = mnist_arrays()  # labels where images belong: right magic, wrong content
    arrays["train-images-idx3-ubyte"] = arrays["train-labels-idx1-ubyte"]
    write_mnist(tmp_path, arrays)
    with pytest.raises(ValueError, match=r"expected uint8 images of shape \(N, 28, 28\)"):
        load_dataset("mnist", tmp_path, verify=False)


def test_missing_files_and_names(tmp_path):
    with pytest.raises(ValueError, match="mnist needs data_dir: .*t10k-labels-idx1-ubyte"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="cifar10 needs data_dir: .*cifar-10-batches-py"):
        load_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_dataset("mnist", tmp_path / "nowhere")
    arrays = mnist_arrays()
    del arrays["t10k-images-idx3-ubyte"]
    write_mnist(tmp_path, arrays)
    with pytest.raises(FileNotFoundError, match="neither t10k-images-idx3-ubyte nor "
                                                "t10k-images-idx3-ubyte.gz"):
        load_dataset("mnist", tmp_path, verify=False)
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 in"):
        load_dataset("cifar10", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        load_dataset("svhn")


def test_fashion_mnist_absent_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(data.datasets, "FASHION_MNIST_DEBIAN_DIR", tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset("fashion-mnist")


# ---------------------------------------------------------------------------------------------
# CIFAR-10 batches, pickled as the release does (a dict of 'data' (N, 3072) uint8, CHW rows,
# and 'labels').

CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def cifar_batches(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return {f: (rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist())
            for f in CIFAR_FILES}


def batch_bytes(images, labels, legacy=True):
    """``legacy``: name numpy's ``_reconstruct`` as numpy 1 did (``numpy.core``), as in the
    release's Python 2 pickles."""
    raw = pickle.dumps({"batch_label": "test", "data": images, "labels": labels}, protocol=3)
    return raw.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n") if legacy else raw


def write_cifar(folder, batches, legacy=True):
    folder.mkdir(parents=True, exist_ok=True)
    for f, (images, labels) in batches.items():
        (folder / f).write_bytes(batch_bytes(images, labels, legacy))
    return folder


def assert_cifar_equal(got, batches):
    train_x, train_y, test_x, test_y = got
    rows = np.concatenate([batches[f][0] for f in CIFAR_FILES[:5]])
    assert train_x.dtype == np.uint8 and train_x.shape == (15, 32, 32, 3)
    # Row layout of the release: 1024 red values, then green, then blue, each row-major.
    n, h, w, c = 4, 5, 17, 2
    assert train_x[n, h, w, c] == rows[n, c * 1024 + h * 32 + w]
    np.testing.assert_array_equal(train_x.transpose(0, 3, 1, 2).reshape(15, 3072), rows)
    np.testing.assert_array_equal(train_y, sum((batches[f][1] for f in CIFAR_FILES[:5]), []))
    np.testing.assert_array_equal(test_x.transpose(0, 3, 1, 2).reshape(3, 3072),
                                  batches["test_batch"][0])
    np.testing.assert_array_equal(test_y, batches["test_batch"][1])


@pytest.mark.parametrize("legacy", [True, False])
def test_cifar_batches_read_back_exactly(tmp_path, legacy):
    batches = cifar_batches()
    folder = write_cifar(tmp_path / "cifar-10-batches-py", batches, legacy)
    assert_cifar_equal(read_cifar10(tmp_path, verify=False), batches)
    assert_cifar_equal(read_cifar10(folder, verify=False), batches)  # the folder itself


def test_cifar_archive_is_read_and_its_checksum_checked(tmp_path):
    batches = cifar_batches()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for f, (images, labels) in batches.items():
            content = batch_bytes(images, labels)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{f}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(buf.getvalue())
    assert_cifar_equal(read_cifar10(tmp_path, verify=False), batches)
    with pytest.raises(ValueError, match=r"cifar-10-python.tar.gz: checksum mismatch .*"
                                         "c58f30108f718f92721af3b95e74349a"):
        read_cifar10(tmp_path)
    archive.write_bytes(buf.getvalue()[:-100])
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz: corrupt, truncated"):
        read_cifar10(tmp_path, verify=False)


def test_cifar_checksums_are_checked_by_default(tmp_path):
    write_cifar(tmp_path, cifar_batches())
    with pytest.raises(ValueError, match="data_batch_1: checksum mismatch .*"
                                         "c99cafc152244af753f735de768cd75f"):
        read_cifar10(tmp_path)


def test_damaged_cifar_batches(tmp_path):
    batches = cifar_batches()
    write_cifar(tmp_path, batches)
    path = tmp_path / "data_batch_3"
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError, match="data_batch_3: corrupt or truncated CIFAR-10 batch"):
        read_cifar10(tmp_path, verify=False)

    # A pickle that would call a function when loaded is refused before anything runs.
    path.write_bytes(pickle.dumps({"data": print}))
    with pytest.raises(ValueError, match="builtins.print is not part of a CIFAR-10 batch"):
        read_cifar10(tmp_path, verify=False)

    path.write_bytes(batch_bytes(batches["data_batch_3"][0][:, :100], [0, 1, 2]))
    with pytest.raises(ValueError, match=r"data_batch_3: 'data' must be a uint8 array of "
                                         r"shape \(N, 3072\), got uint8 \(3, 100\)"):
        read_cifar10(tmp_path, verify=False)

    path.write_bytes(batch_bytes(batches["data_batch_3"][0], [0, 1]))
    with pytest.raises(ValueError, match=r"data_batch_3: \(2,\) labels for 3 images in the "):
        read_cifar10(tmp_path, verify=False)

    write_cifar(tmp_path, batches)
    (tmp_path / "data_batch_5").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_5 is missing"):
        read_cifar10(tmp_path, verify=False)


def test_load_cifar10_preprocesses_with_gcn_zca_on_the_full_train_set(tmp_path, monkeypatch):
    # The real fit is a 3072 x 3072 eigendecomposition (seconds); its maths is tested below.
    batches = cifar_batches()
    write_cifar(tmp_path, batches)
    seen = []

    def spy(train, test):
        seen.append((train, test))
        return train.astype(np.float32) + 0.5, test.astype(np.float32) - 0.5

    monkeypatch.setattr(data.datasets, "gcn_zca", spy)
    ds = load_dataset("cifar10", tmp_path, limit=4, verify=False)
    raw = read_cifar10(tmp_path, verify=False)
    np.testing.assert_array_equal(seen[0][0], raw[0])  # fitted on all 15, not the first 4
    np.testing.assert_array_equal(seen[0][1], raw[2])
    np.testing.assert_array_equal(ds.train_images, raw[0][:4] + np.float32(0.5))
    np.testing.assert_array_equal(ds.test_images, raw[2] - np.float32(0.5))
    assert ds.train_labels.dtype == ds.test_labels.dtype == np.int32
    assert ds.train_images.shape == (4, 32, 32, 3) and len(ds.train_labels) == 4


# ---------------------------------------------------------------------------------------------
# GCN and ZCA, from their definitions.


def correlated(n, shape, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    d = int(np.prod(shape))
    mix = rng.standard_normal((d, d)) / np.sqrt(d) + np.eye(d)
    return (scale * rng.standard_normal((n, d)) @ mix + rng.standard_normal(d)).reshape(n, *shape)


def test_gcn_centres_and_scales_each_image():
    x = correlated(50, (4, 4, 3), 0)
    y = gcn(x)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.std(axis=(1, 2, 3), ddof=1), 1, rtol=1e-12)
    np.testing.assert_allclose(gcn(3.0 * x + 7.0), y, atol=1e-12)  # contrast and brightness
    np.testing.assert_array_equal(gcn(np.full((1, 2, 2, 3), 9.0)), 0)  # constant: centred only


def test_zca_whitens_the_training_set_symmetrically():
    x = correlated(2000, (4, 5), 1)
    zca = ZCA.fit(x, eps=0.0)
    w = zca.apply(x).reshape(2000, -1).astype(np.float64)
    np.testing.assert_allclose(np.cov(w.T), np.eye(20), atol=1e-5)
    np.testing.assert_allclose(zca.matrix, zca.matrix.T, atol=1e-12)  # ZCA, not any whitening
    assert np.linalg.eigvalsh(zca.matrix).min() > 0
    assert zca.apply(x).shape == x.shape and zca.apply(x).dtype == np.float32


def test_zca_eps_shrinks_each_eigenvalue_to_lambda_over_lambda_plus_eps():
    x = correlated(500, (6,), 2)
    lam = np.linalg.eigvalsh(np.cov(x.T))
    eps = float(np.median(lam))
    w = ZCA.fit(x, eps=eps).apply(x).astype(np.float64)
    np.testing.assert_allclose(np.linalg.eigvalsh(np.cov(w.T)), lam / (lam + eps), rtol=1e-5)


def test_gcn_zca_is_fitted_on_train_only():
    train, test = correlated(800, (3, 3, 2), 3), correlated(100, (3, 3, 2), 4, scale=3.0)
    tr, te = gcn_zca(train, test, eps=1e-10)
    # GCN leaves every image orthogonal to the constant image 1, so the whitened training
    # covariance is the projector onto the rest, I - 1 1^T / D.
    d = 18
    np.testing.assert_allclose(np.cov(tr.reshape(800, d).T.astype(np.float64)),
                               np.eye(d) - np.ones((d, d)) / d, atol=1e-4)
    # The test set goes through the training set's mean and matrix, whatever it is.
    zca = ZCA.fit(gcn(train), eps=1e-10)
    np.testing.assert_allclose(te, zca.apply(gcn(test)), rtol=1e-6, atol=1e-6)
    tr2, _ = gcn_zca(train, test[::-1] * 5 + 1, eps=1e-10)
    np.testing.assert_array_equal(tr2, tr)
    assert not np.allclose(np.cov(te.reshape(100, d).T), np.eye(d) - 1 / d, atol=0.1)


# ---------------------------------------------------------------------------------------------
# Digits.


def test_upsample_interpolates_linearly_with_centred_pixels():
    ramp = np.arange(8.0)[None, None, :] + 10 * np.arange(8.0)[None, :, None]  # affine image
    up = upsample(ramp, 28)
    pos = (np.arange(28) + 0.5) * 8 / 28 - 0.5
    inside = (pos >= 0) & (pos <= 7)
    want = pos[None, :] + 10 * pos[:, None]
    np.testing.assert_allclose(up[0][np.ix_(inside, inside)], want[np.ix_(inside, inside)],
                               atol=1e-12)
    img = np.random.default_rng(0).random((2, 8, 8))
    np.testing.assert_allclose(upsample(img[:, ::-1, ::-1], 28), upsample(img, 28)[:, ::-1, ::-1],
                               atol=1e-12)  # centred: commutes with flips
    assert upsample(img, 28).min() >= img.min() and upsample(img, 28).max() <= img.max()
    np.testing.assert_allclose(upsample(np.full((1, 8, 8), 0.3), 28), 0.3, atol=1e-15)


def test_digits():
    from sklearn.datasets import load_digits

    ds = load_dataset("digits")
    assert ds.train_images.shape == (1500, 28, 28, 1) and ds.test_images.shape == (297, 28, 28, 1)
    assert ds.train_images.dtype == np.float32 and ds.train_labels.dtype == np.int32
    assert ds.train_images.min() == 0 and ds.train_images.max() == 1
    target = load_digits().target
    np.testing.assert_array_equal(np.concatenate([ds.train_labels, ds.test_labels]), target)
    again = load_dataset("digits", limit=10)
    np.testing.assert_array_equal(again.train_images, ds.train_images[:10])  # deterministic
    np.testing.assert_array_equal(again.test_images, ds.test_images)


# ---------------------------------------------------------------------------------------------
# The real Fashion-MNIST (Debian's dataset-fashion-mnist; .ci/run installs it).


@pytest.mark.skipif(not FASHION_MNIST_DEBIAN_DIR.is_dir(),
                    reason=f"Fashion-MNIST not installed in {FASHION_MNIST_DEBIAN_DIR} "
                           "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    ds = load_dataset("fashion-mnist")  # checksums verified
    assert ds.train_images.shape == (60000, 28, 28, 1)
    assert ds.test_images.shape == (10000, 28, 28, 1)
    assert ds.train_images.dtype == np.float32 and ds.test_labels.dtype == np.int32
    assert ds.train_images.min() == 0 and ds.train_images.max() == 1
    np.testing.assert_array_equal(np.bincount(ds.train_labels), np.full(10, 6000))
    np.testing.assert_array_equal(np.bincount(ds.test_labels), np.full(10, 1000))
    # Images of one class look alike: each class mean is nearer its own test images.
    means = np.stack([ds.train_images[ds.train_labels == k].mean(0) for k in range(10)])
    dist = ((ds.test_images[:1000, None] - means[None]) ** 2).sum(axis=(2, 3, 4))
    assert (dist.argmin(1) == ds.test_labels[:1000]).mean() > 0.6
