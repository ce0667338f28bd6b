"""Data of the deep benchmarks (docs/deepnets.md): MNIST, Fashion-MNIST, CIFAR-10 and digits.

``load_dataset(name, data_dir=None, *, limit=None, verify=True) -> Dataset`` returns NHWC
``float32`` images and ``int32`` labels:

- ``"mnist"``: ``(N, 28, 28, 1)`` in [0, 1], from the IDX files in ``data_dir``.
- ``"fashion-mnist"``: the same, from ``data_dir`` or, by default, from where Debian's
  package ``dataset-fashion-mnist`` installs it (``FASHION_MNIST_DEBIAN_DIR``,
  ``/usr/share/datasets/fashion-mnist``).
- ``"cifar10"``: ``(N, 32, 32, 3)``, GCN then ZCA-whitened, from the pickled batches in
  ``data_dir``.
- ``"digits"``: ``(N, 28, 28, 1)`` in [0, 1], scikit-learn's bundled ``load_digits``
  upsampled; nothing to install.

MNIST-like images are the raw intensities divided by 255 (digits: by 16), with no further
standardization. Sizes: MNIST and Fashion-MNIST 60,000 train / 10,000 test; CIFAR-10 50,000 /
10,000; digits 1,500 / 297.


The package holds three modules: :mod:`lesample.data.formats` (IDX and CIFAR-10 files,
checksums, the restricted unpickler), :mod:`lesample.data.preprocess` (GCN, ZCA, upsampling)
and :mod:`lesample.data.datasets` (``load_dataset``).
"""

from lesample.data.datasets import DATASETS, FASHION_MNIST_DEBIAN_DIR, Dataset, load_dataset
from lesample.data.formats import read_cifar10, read_idx
from lesample.data.preprocess import ZCA, gcn, gcn_zca, upsample

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DEBIAN_DIR",
    "Dataset",
    "load_dataset",
    "read_idx",
    "read_cifar10",
    "gcn",
    "ZCA",
    "gcn_zca",
    "upsample",
]
