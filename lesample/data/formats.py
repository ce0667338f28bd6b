"""File formats of the deep-benchmark data sets: IDX (MNIST, Fashion-MNIST) and the pickled
CIFAR-10 batches, read with format checks and published checksums; nothing here preprocesses.

Files
-----
MNIST and Fashion-MNIST: the four IDX files of the official releases in ``data_dir``,
gzipped or not (``train-images-idx3-ubyte[.gz]``, ``train-labels-idx1-ubyte[.gz]``,
``t10k-images-idx3-ubyte[.gz]``, ``t10k-labels-idx1-ubyte[.gz]``). A gzip file is recognized
by its content, not its name.

CIFAR-10, "python version": ``data_dir`` holds the ``cifar-10-batches-py`` folder
(``data_batch_1`` ... ``data_batch_5``, ``test_batch``), or is that folder, or holds the
unextracted ``cifar-10-python.tar.gz``. The batches are unpickled by an unpickler that builds
only dicts, lists, strings and numpy arrays, so a file cannot run code.

Checksums
---------
With ``verify=True`` (default) each file is checked against a published MD5 before it is
used; ``verify=False`` reads files that are not the official release (a subset, a file you
wrote), with the same format checks. Every file is checked for its format either way:
magic number, header, size, label range, image/label counts.

- MNIST and Fashion-MNIST: the MD5 of the **uncompressed** IDX file (published beside the
  ``.gz`` MD5s by several dataset loaders and tutorials). The content is checked, not the
  ``.gz``, because Debian's ``dataset-fashion-mnist`` recompresses the files: its ``.gz``
  MD5s differ from those in the Fashion-MNIST README, and its content matches the
  uncompressed MD5s exactly. A raw file and a gzipped one are thus verified the same way.
- CIFAR-10: torchvision's MD5s of each pickled batch, and of ``cifar-10-python.tar.gz``
  when the archive is read.

Errors: a missing file or folder raises ``FileNotFoundError`` saying which files to put where;
a truncated or corrupt file, a wrong magic number, mismatched counts or a checksum mismatch
raise ``ValueError`` naming the file and the fix.

"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["HOME", "CIFAR10_MD5", "IDX_MD5", "read_cifar10", "read_idx", "read_mnist_like",
           "required_dir"]

NUM_CLASSES = 10

# MD5 of the uncompressed IDX files of the official releases.
IDX_MD5 = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
HOME = {
    "mnist": "the MNIST database (yann.lecun.com/exdb/mnist, or a mirror with the same MD5s)",
    "fashion-mnist": "github.com/zalandoresearch/fashion-mnist (data/fashion), or "
                     "`apt-get install dataset-fashion-mnist`",
    "cifar10": "www.cs.toronto.edu/~kriz/cifar.html (CIFAR-10 python version)",
}

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


# ---------------------------------------------------------------------------------------------
# Files and checksums.


def required_dir(name: str, data_dir) -> Path:
    if data_dir is None:
        raise ValueError(f"{name} needs data_dir: {_expected_files(name)}")
    path = Path(data_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"data_dir {path} is not a folder; {_expected_files(name)}")
    return path


def _expected_files(name: str) -> str:
    if name == "cifar10":
        return (f"a folder holding {CIFAR10_DIR}/ ({', '.join(CIFAR10_MD5)}), that folder "
                f"itself, or {CIFAR10_ARCHIVE}, from {HOME[name]}")
    return (f"a folder with {', '.join(IDX_MD5[name])} (each raw or .gz) from {HOME[name]}")


def _check_md5(data: bytes, expected: str | None, path, source: str) -> None:
    if expected is None:
        return
    found = hashlib.md5(data, usedforsecurity=False).hexdigest()
    if found != expected:
        raise ValueError(
            f"{path}: checksum mismatch (md5 {found}, the official file's is {expected}): "
            f"the file is corrupt or not the official release; download it again from "
            f"{source}, or pass verify=False to read a file that is not the official one")


def _gunzip(raw: bytes, path) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({err}); download it again, "
                         "or unpack a good copy next to it") from err


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST).

# IDX type codes (third byte of the magic number) and their big-endian dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike, *, md5: str | None = None,
             source: str = "its source") -> np.ndarray:
    """Read an IDX file (raw or gzipped) into an array of the shape its header gives.

    The magic number is ``0x00 0x00 type ndim`` followed by ``ndim`` big-endian ``uint32``
    sizes, then the data (``type`` in ``_IDX_DTYPES``; ``0x08``, unsigned bytes, for MNIST).
    ``md5``, if given, is checked against the uncompressed content; ``source`` says where
    the official file is, for the error message.
    """
    data = _gunzip(Path(path).read_bytes(), path)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES or data[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'}; "
                         "an IDX file starts 0000 then a type byte and a dimension count): "
                         "check that this is the right file")
    ndim, dtype = data[3], np.dtype(_IDX_DTYPES[data[2]])
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header; download the file again")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", ndim, 4))
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise ValueError(f"{path}: {what}: the header {shape} of {dtype} needs {expected} "
                         f"bytes, the file has {len(data)}; download the file again")
    _check_md5(data, md5, path, source)
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _load_idx(data_dir: Path, stem: str, name: str, verify: bool):
    """The array of ``stem`` or ``stem.gz`` in ``data_dir``, and the path it came from."""
    for path in (data_dir / stem, data_dir / f"{stem}.gz"):
        if path.is_file():
            md5 = IDX_MD5[name][stem] if verify else None
            return read_idx(path, md5=md5, source=HOME[name]), path
    raise FileNotFoundError(f"{data_dir} has neither {stem} nor {stem}.gz; "
                            f"{name} needs {_expected_files(name)}")


def read_mnist_like(name: str, data_dir: Path, verify: bool):
    """uint8 train images, labels, test images, labels from the IDX files in ``data_dir``."""
    out = []
    for split in ("train", "t10k"):
        images, images_path = _load_idx(data_dir, f"{split}-images-idx3-ubyte", name, verify)
        labels, labels_path = _load_idx(data_dir, f"{split}-labels-idx1-ubyte", name, verify)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"{images_path}: expected uint8 images of shape (N, 28, 28), got "
                             f"{images.dtype} {images.shape}: check that this is an image file")
        _check_labels(labels, labels_path, len(images), f"in {images_path}: the two files "
                      "must come from the same split")
        out += [images, labels]
    return out


def _check_labels(labels: np.ndarray, path, count: int, mismatch: str) -> None:
    """Labels: one per image, in 0..9; ``mismatch`` ends the message when the count is off."""
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(f"{path}: {labels.shape} labels for {count} images {mismatch}")
    if labels.size and not 0 <= labels.min() <= labels.max() < NUM_CLASSES:
        raise ValueError(f"{path}: labels outside 0..{NUM_CLASSES - 1}: check that this is a "
                         "label file")


# ---------------------------------------------------------------------------------------------
# CIFAR-10.

_RECONSTRUCT = np.ndarray(0).__reduce__()[0]  # numpy's _reconstruct, wherever numpy keeps it
_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # pickles written by numpy 1
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # and by numpy 2
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings and numpy arrays; refuses any other global."""

    def find_class(self, module, name):
        try:
            return _SAFE_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a CIFAR-10 batch") \
                from None


def _cifar_batch(data: bytes, path, md5: str | None):
    """uint8 NHWC images and labels of one pickled batch (bytes of the file ``path``)."""
    _check_md5(data, md5, path, HOME["cifar10"])
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as err:  # a damaged pickle fails in many ways: report all alike
        raise ValueError(f"{path}: corrupt or truncated CIFAR-10 batch ({type(err).__name__}: "
                         f"{err}); download it again from {HOME['cifar10']}") from err
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: not a CIFAR-10 batch (a dict with 'data' and 'labels'): "
                         f"check that this is a file of {CIFAR10_DIR}")
    images, labels = batch["data"], np.asarray(batch["labels"])
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 2
            and images.shape[1] == 3 * 32 * 32):
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got "
                         f"{getattr(images, 'dtype', type(images))} "
                         f"{getattr(images, 'shape', '')}: check that this is a CIFAR-10 batch")
    _check_labels(labels, path, len(images), f"in the same batch: download it again from "
                  f"{HOME['cifar10']}")
    # Each row is the red, green, blue 32x32 planes in turn (CHW): NHWC for the nets.
    return images.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar10(data_dir: str | os.PathLike, *, verify: bool = True):
    """CIFAR-10 as read from ``data_dir`` (see "Files" in the module docstring), unprocessed:
    ``(train_images, train_labels, test_images, test_labels)``, the images ``uint8`` NHWC
    ``(N, 32, 32, 3)`` in the order of the batches (``data_batch_1`` ... ``5``, then
    ``test_batch``). ``verify`` checks torchvision's MD5s."""
    data_dir = Path(data_dir)
    folder = next((d for d in (data_dir / CIFAR10_DIR, data_dir) if (d / "test_batch").is_file()),
                  None)
    archive = data_dir / CIFAR10_ARCHIVE
    if folder is not None:
        def read(member):
            path = folder / member
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing; cifar10 needs "
                                        f"{_expected_files('cifar10')}")
            return path.read_bytes(), path
    elif archive.is_file():
        tar_bytes = archive.read_bytes()
        _check_md5(tar_bytes, CIFAR10_ARCHIVE_MD5 if verify else None, archive, HOME["cifar10"])
        try:
            with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:gz") as tar:
                members = {m: tar.extractfile(f"{CIFAR10_DIR}/{m}").read() for m in CIFAR10_MD5}
        except (tarfile.TarError, KeyError, OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{archive}: corrupt, truncated or not the CIFAR-10 archive "
                             f"({err}); download it again from {HOME['cifar10']}") from err

        def read(member):
            return members[member], f"{archive}:{CIFAR10_DIR}/{member}"
    else:
        raise FileNotFoundError(f"no CIFAR-10 in {data_dir}: cifar10 needs "
                                f"{_expected_files('cifar10')}")
    batches = [_cifar_batch(*read(m), CIFAR10_MD5[m] if verify else None) for m in CIFAR10_MD5]
    train = batches[:-1]  # data_batch_1..5, in order; test_batch is last
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]),
            *batches[-1])
