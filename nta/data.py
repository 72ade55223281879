"""The datasets of the paper's experiments (§2.3, §3): MNIST for the autoencoder, CIFAR-10 for the convnet.

Three sources give the same :class:`Split` pair (train, test) of uint8 images and int64 labels:

* ``"tfds"``: any tensorflow-datasets image classification dataset (needs internet for the first download);
* ``"files"``: the datasets' original distribution files in a folder (MNIST-format IDX files, the CIFAR-10
  python batches), for machines without internet;
* ``"sample"``: 6,000 train / 1,000 test MNIST digits embedded in the package (``nta/sample_data``), for
  tests and quick runs.

:func:`train_dataset` turns a split into the per-round minibatches x^n of the online learning view (§2.1):
the order of every epoch is a pure function of (seed, epoch) (:func:`epoch_permutation`), so a run resumed
at an epoch boundary sees exactly the batches an uninterrupted run would, without saving any RNG state.
:func:`fixed_subset` picks the fixed fraction of training data on which §3.3 records activation
configurations.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import importlib.resources
import math
import numbers
import pickle
import socket
import struct
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from nta.errors import NTAError

SOURCES = ("tfds", "files", "sample")

# Names the "files" source reads, with their on-disk format and number of classes.
FILE_DATASETS = {"mnist": ("idx", 10), "fashion_mnist": ("idx", 10), "cifar10": ("cifar10", 10)}

# The original IDX file names (MNIST, Fashion-MNIST); each may also be gzipped (".gz").
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCH = "test_batch"

SAMPLE_FILE = "mnist_sample.npz"
SAMPLE_SEED = 0
SAMPLE_PER_CLASS = {"train": 600, "test": 100}

# Mixed into fixed_subset's seed so the recorded subset is independent of the epoch shuffles: numpy's
# SeedSequence pads with zeros, so default_rng(seed) would equal epoch_permutation's stream for epoch 0.
_SUBSET_STREAM = 0x6E7461

_HOW_TO_GET = {
    "mnist": "http://yann.lecun.com/exdb/mnist/",
    "fashion_mnist": "https://github.com/zalandoresearch/fashion-mnist",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html (cifar-10-python.tar.gz, extracted)",
}


@dataclasses.dataclass
class Split:
  """One split of an image classification dataset.

  Attributes:
    x: uint8 images, shape (N, H, W, C): (N, 28, 28, 1) for MNIST, (N, 32, 32, 3) for CIFAR-10.
    y: int64 labels in [0, num_classes), shape (N,).
    name: dataset and split, e.g. "mnist/train"; a train_size prefix reads "mnist/train[:1000]".
    num_classes: number of classes.
    full_size: the size of the whole split before ``train_size`` kept a prefix of it (0: ``len(y)``).
  """
  x: np.ndarray
  y: np.ndarray
  name: str
  num_classes: int
  full_size: int = 0

  @property
  def source_size(self) -> int:
    """Examples in the whole split this one was cut from (A.6's "1% of the dataset" counts these)."""
    return self.full_size or len(self.y)


# ----------------------------------------------------------------------------------------------------------
# Loading


def load(source: str, name: str = "mnist", data_dir: str | None = None,
         train_size: int | None = None) -> tuple[Split, Split]:
  """Loads the train and test splits of a dataset.

  Args:
    source: "tfds" (tensorflow-datasets), "files" (original distribution files in ``data_dir``) or
      "sample" (the MNIST sample embedded in nta).
    name: dataset name: any tfds image classification dataset for "tfds"; "mnist", "fashion_mnist" or
      "cifar10" for "files"; only "mnist" for "sample".
    data_dir: for "tfds", the tfds data_dir (None: tfds' default); for "files", the folder holding the
      files (required); ignored for "sample".
    train_size: if given, keep only the first ``train_size`` training examples in the source's own fixed
      order (the distribution files' order; not shuffled, independent of any seed). The test split is
      always complete.

  Returns:
    A (train, test) pair of :class:`Split`.

  Raises:
    NTAError: unknown source or name, missing or malformed files, a failed tfds download, or a
      train_size outside 1..N.
  """
  if source == "tfds":
    train, test = _load_tfds(name, data_dir)
  elif source == "files":
    train, test = _load_files(name, data_dir)
  elif source == "sample":
    train, test = _load_sample(name)
  else:
    raise NTAError(f"unknown data source {source!r}; use one of: {', '.join(SOURCES)}")
  if train_size is not None:
    train = _take_prefix(train, train_size)
  return train, test


def _take_prefix(split: Split, size: int) -> Split:
  n = len(split.y)
  if isinstance(size, bool) or not isinstance(size, numbers.Integral) or not 1 <= size <= n:
    raise NTAError(f"train_size={size!r} is out of range: {split.name} has {n} examples; use 1..{n}, or all of "
                   "them with --config.data.train_size=0 (train_size=None in nta.data.load)")
  return Split(split.x[:size], split.y[:size], f"{split.name}[:{int(size)}]", split.num_classes, split.source_size)


def _short(error: BaseException) -> str:
  """First line of an exception, cut short, for one-line NTAError messages."""
  lines = str(error).strip().splitlines()
  text = lines[0] if lines else ""
  if len(text) > 200:
    text = text[:197] + "..."
  return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _make_split(x: np.ndarray, y: np.ndarray, name: str, num_classes: int, origin: str) -> Split:
  """Checks labels and builds a Split with uint8 NHWC images and int64 labels."""
  y = np.asarray(y).astype(np.int64).reshape(-1)
  if len(y) and (y.min() < 0 or y.max() >= num_classes):
    raise NTAError(f"{origin} has labels in [{y.min()}, {y.max()}], expected 0..{num_classes - 1} for "
                   f"{name}; are these the right files?")
  return Split(np.asarray(x, np.uint8), y, name, num_classes)


# --- tfds -------------------------------------------------------------------------------------------------


def _online(host: str = "storage.googleapis.com", timeout: float = 3.0) -> bool:
  """Whether tfds' download host answers (a connection within ``timeout`` seconds)."""
  try:
    socket.create_connection((host, 443), timeout=timeout).close()
    return True
  except OSError:
    return False


def _load_tfds(name: str, data_dir: str | None) -> tuple[Split, Split]:
  import tensorflow_datasets as tfds  # slow to import; only this source needs it

  where = data_dir if data_dir is not None else "tfds' default data_dir (~/tensorflow_datasets)"
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise NTAError(f"{name!r} is not a tensorflow-datasets dataset (see "
                   "https://www.tensorflow.org/datasets/catalog/overview; e.g. mnist, fashion_mnist, "
                   "cifar10)") from None
  except Exception as e:  # a bad data_dir, a broken tfds install, ...
    raise NTAError(f"tfds could not load {name!r} into {where}: {_short(e)}; download it on a machine "
                   "with internet or use --config.data.source=files") from e
  features = builder.info.features
  label = features["label"] if "label" in features else None
  if "image" not in features or label is None or not hasattr(label, "num_classes"):
    raise NTAError(f"tfds dataset {name!r} is not an image classification dataset (it needs 'image' and "
                   f"a class 'label' feature; it has {', '.join(features.keys())})")
  if not builder.is_prepared() and not _online():
    # tfds would retry its download for minutes, logging every attempt.
    raise NTAError(f"tfds has no {name!r} in {where} and there is no network to download it; use the original "
                   "files offline with --config.data.source=files --config.data.data_dir=<their folder> (or "
                   "--config.data.source=sample for the embedded MNIST sample)")
  try:
    builder.download_and_prepare()
    arrays = tfds.as_numpy(builder.as_dataset(split=["train", "test"], batch_size=-1, as_supervised=True))
  except ModuleNotFoundError as e:  # tfds imports some download and preparation dependencies lazily
    raise NTAError(f"tfds could not load {name!r} into {where}: {_short(e)}; pip install {e.name} or use "
                   "--config.data.source=files") from e
  except Exception as e:  # no network, a partial download, no "test" split, ...
    raise NTAError(f"tfds could not load {name!r} into {where}: {_short(e)}; download it on a machine "
                   "with internet or use --config.data.source=files") from e
  num_classes = int(label.num_classes)
  return tuple(_make_split(x, y, f"{name}/{part}", num_classes, f"tfds {name}/{part}")
               for (x, y), part in zip(arrays, ("train", "test")))


# --- original files ---------------------------------------------------------------------------------------


def _load_files(name: str, data_dir: str | None) -> tuple[Split, Split]:
  if name not in FILE_DATASETS:
    raise NTAError(f"the files source reads {', '.join(FILE_DATASETS)}, not {name!r}; use "
                   "--config.data.source=tfds for other datasets")
  if data_dir is None:
    raise NTAError(f"the files source needs data_dir: a folder with the original {name} files (from "
                   f"{_HOW_TO_GET[name]})")
  folder = Path(data_dir).expanduser()
  if not folder.is_dir():
    raise NTAError(f"data_dir {str(folder)!r} is not a folder; put the original {name} files there (from "
                   f"{_HOW_TO_GET[name]})")
  fmt, num_classes = FILE_DATASETS[name]
  if fmt == "idx":
    return tuple(_make_split(*load_idx_pair(folder, part), f"{name}/{part}", num_classes,
                             f"{folder}/{IDX_FILES[part][1]}") for part in ("train", "test"))
  return load_cifar10_batches(folder)


def _idx_path(folder: Path, base: str) -> Path:
  for path in (folder / base, folder / (base + ".gz")):
    if path.is_file():
      return path
  expected = ", ".join(f"{f}[.gz]" for part in IDX_FILES.values() for f in part)
  raise NTAError(f"missing {base}[.gz] in {folder}: the files source expects {expected} (from "
                 f"{_HOW_TO_GET['mnist']} or the Fashion-MNIST repository)")


def read_idx(path: str | Path, magic: int) -> np.ndarray:
  """Reads one IDX file of unsigned bytes, gzipped or plain (detected from its content, not its name).

  Args:
    path: the file.
    magic: the expected magic number, :data:`IDX_IMAGES_MAGIC` or :data:`IDX_LABELS_MAGIC`; its low byte
      is the number of dimensions.

  Returns:
    uint8 array with the dimensions of the file's header, e.g. (N, 28, 28) or (N,).

  Raises:
    NTAError: unreadable or corrupt gzip, wrong magic number, or a size that disagrees with the header.
  """
  path = Path(path)
  try:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
      raw = gzip.decompress(raw)
  except (OSError, EOFError, zlib.error) as e:  # a cut-off download shows up here as EOFError
    raise NTAError(f"could not read IDX file {path}: {_short(e)}; download it again") from e
  ndim = magic & 0xFF
  header = 4 + 4 * ndim
  if len(raw) < header:
    raise NTAError(f"IDX file {path} is truncated: {len(raw)} bytes, shorter than its {header}-byte header; "
                   "download it again")
  got = int.from_bytes(raw[:4], "big")
  if got != magic:
    raise NTAError(f"IDX file {path} has magic number 0x{got:08x}, expected 0x{magic:08x} "
                   f"({'images' if magic == IDX_IMAGES_MAGIC else 'labels'}); is it the right file?")
  dims = struct.unpack(f">{ndim}I", raw[4:header])
  expected, actual = math.prod(dims), len(raw) - header
  if actual != expected:
    what = "truncated" if actual < expected else "too long"
    raise NTAError(f"IDX file {path} is {what}: its header {dims} needs {expected} data bytes, it has "
                   f"{actual}; download it again")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(dims).copy()


def load_idx_pair(folder: str | Path, part: str) -> tuple[np.ndarray, np.ndarray]:
  """Reads the images and labels of one MNIST-format split.

  Args:
    folder: folder with the original IDX files (plain or ".gz"; plain wins when both exist).
    part: "train" or "test" (the t10k files).

  Returns:
    (images, labels): uint8 (N, H, W, 1) and uint8 (N,).

  Raises:
    NTAError: a missing or malformed file, or image and label files of different lengths.
  """
  folder = Path(folder)
  image_path, label_path = (_idx_path(folder, base) for base in IDX_FILES[part])
  images = read_idx(image_path, IDX_IMAGES_MAGIC)
  labels = read_idx(label_path, IDX_LABELS_MAGIC)
  if len(images) != len(labels):
    raise NTAError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels; "
                   "the files do not belong together")
  return images[..., np.newaxis], labels


def _cifar10_folder(folder: Path) -> Path:
  return folder / CIFAR10_DIR if (folder / CIFAR10_DIR).is_dir() else folder


def _read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
  try:
    with open(path, "rb") as f:
      # The original batches are Python 2 pickles with byte-string keys; they are trusted input here.
      batch = pickle.load(f, encoding="bytes")
  except Exception as e:  # unpickling raises many types for a corrupt file
    raise NTAError(f"CIFAR-10 batch {path} could not be read: {_short(e)}; extract cifar-10-python.tar.gz "
                   "again") from e
  if not isinstance(batch, dict):
    raise NTAError(f"CIFAR-10 batch {path} holds a {type(batch).__name__}, expected a dict with data and "
                   "labels; extract cifar-10-python.tar.gz again")
  data = batch.get(b"data", batch.get("data"))
  labels = batch.get(b"labels", batch.get("labels"))
  data = None if data is None else np.asarray(data)
  if data is None or labels is None or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
      or len(labels) != len(data):
    raise NTAError(f"CIFAR-10 batch {path} does not hold data (N, 3072) and N labels; extract "
                   "cifar-10-python.tar.gz again")
  # Rows are 1024 red, then green, then blue values of a row-major 32x32 image: CHW, made NHWC here.
  x = data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(x), np.asarray(labels)


def load_cifar10_batches(folder: str | Path) -> tuple[Split, Split]:
  """Reads the CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``).

  Args:
    folder: either ``cifar-10-batches-py`` itself or a folder containing it.

  Returns:
    (train, test) with uint8 images (N, 32, 32, 3) in NHWC order: 50,000 and 10,000 for the real data.

  Raises:
    NTAError: naming missing or corrupt batches.
  """
  folder = _cifar10_folder(Path(folder))
  names = CIFAR10_TRAIN_BATCHES + (CIFAR10_TEST_BATCH,)
  missing = [n for n in names if not (folder / n).is_file()]
  if missing:
    raise NTAError(f"missing CIFAR-10 batch(es) {', '.join(missing)} in {folder}: expected "
                   f"{CIFAR10_DIR}/ with {', '.join(names)} (from {_HOW_TO_GET['cifar10']})")
  parts = [_read_cifar10_batch(folder / n) for n in names]
  train_x = np.concatenate([x for x, _ in parts[:-1]])
  train_y = np.concatenate([y for _, y in parts[:-1]])
  return (_make_split(train_x, train_y, "cifar10/train", 10, f"{folder}/data_batch_*"),
          _make_split(*parts[-1], "cifar10/test", 10, str(folder / CIFAR10_TEST_BATCH)))


# --- embedded sample --------------------------------------------------------------------------------------


def sample_path():
  """The embedded MNIST sample (an ``importlib.resources`` Traversable, usually a plain path)."""
  return importlib.resources.files("nta").joinpath("sample_data", SAMPLE_FILE)


def _load_sample(name: str) -> tuple[Split, Split]:
  if name != "mnist":
    raise NTAError(f"the sample source embeds only mnist, not {name!r}; use --config.data.source=tfds or "
                   "files for other datasets")
  resource = sample_path()
  try:
    with resource.open("rb") as f, np.load(f) as npz:
      arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
  except Exception as e:  # a missing package file or a broken checkout
    raise NTAError(f"the embedded sample {resource} could not be read: {_short(e)}; reinstall nta or "
                   "rebuild it with python -m nta.data --build-sample") from e
  return tuple(_make_split(arrays[f"x_{p}"][..., np.newaxis], arrays[f"y_{p}"], f"mnist_sample/{p}", 10,
                           str(resource)) for p in ("train", "test"))


def build_sample(src_dir: str | Path, out_path: str | Path, seed: int = SAMPLE_SEED,
                 per_class: dict | None = None) -> Path:
  """Builds the embedded MNIST sample from the original IDX files.

  Each class contributes the same number of digits, drawn without replacement with
  ``np.random.default_rng(seed)`` (train classes 0..9, then test classes 0..9); the chosen digits keep
  their order in the original files, so a prefix of the sample is as mixed as a prefix of MNIST.

  Args:
    src_dir: folder with train-images-idx3-ubyte[.gz] and the other three MNIST files.
    out_path: the .npz to write (``nta/sample_data/mnist_sample.npz`` for the packaged one).
    seed: selection seed.
    per_class: digits per class, {"train": 600, "test": 100} by default.

  Returns:
    ``out_path``. The file holds uint8 x_train (6000, 28, 28), y_train (6000,), x_test (1000, 28, 28),
    y_test (1000,), the int32 positions train_index/test_index in the original files, and the seed.
  """
  per_class = dict(SAMPLE_PER_CLASS if per_class is None else per_class)
  rng = np.random.default_rng(seed)
  arrays = {"seed": np.int64(seed)}
  for part in ("train", "test"):
    images, labels = load_idx_pair(src_dir, part)
    chosen = []
    for c in range(10):
      members = np.flatnonzero(labels == c)
      if len(members) < per_class[part]:
        raise NTAError(f"{src_dir} {part} has {len(members)} digits of class {c}, fewer than the "
                       f"{per_class[part]} the sample needs")
      chosen.append(rng.choice(members, per_class[part], replace=False))
    index = np.sort(np.concatenate(chosen))
    arrays.update({f"x_{part}": images[index, ..., 0], f"y_{part}": labels[index],
                   f"{part}_index": index.astype(np.int32)})
  out_path = Path(out_path)
  out_path.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(out_path, **arrays)
  return out_path


# ----------------------------------------------------------------------------------------------------------
# Epochs, batches and subsets


def _check_int(value, what: str, minimum: int) -> int:
  if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
    raise NTAError(f"{what} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
  """Rounds per epoch: ceil(num_examples / batch_size), since the last partial batch is kept."""
  num_examples = _check_int(num_examples, "num_examples", 0)
  batch_size = _check_int(batch_size, "batch_size", 1)
  return -(-num_examples // batch_size)


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The order in which one epoch visits the training examples.

  A pure function of (seed, epoch): a resumed run recomputes the order of any epoch instead of restoring
  RNG state.

  Args:
    num_examples: N, the training split's size.
    seed: the run's seed (>= 0).
    epoch: 0-based epoch index.

  Returns:
    int64 permutation of range(N), shape (N,); ``np.random.default_rng([seed, epoch]).permutation(N)``.
  """
  num_examples = _check_int(num_examples, "num_examples", 0)
  seed = _check_int(seed, "seed", 0)
  epoch = _check_int(epoch, "epoch", 0)
  return np.random.default_rng([seed, epoch]).permutation(num_examples).astype(np.int64)


def fixed_subset(num_examples: int, size: int | float, seed: int) -> np.ndarray:
  """A seeded subset of example indices, e.g. the 1% of training data whose activations §3.3 records.

  Args:
    num_examples: N, the split's size.
    size: a count (int in 1..N) or a fraction (float in (0, 1], rounded to the nearest count, at least 1).
    seed: the run's seed (>= 0); the subset does not depend on, or correlate with, the epoch orders.

  Returns:
    Sorted int64 indices without repeats, shape (count,).
  """
  num_examples = _check_int(num_examples, "num_examples", 1)
  seed = _check_int(seed, "seed", 0)
  if isinstance(size, numbers.Integral) and not isinstance(size, bool):
    if not 1 <= size <= num_examples:
      raise NTAError(f"subset size {size} is out of range: use a count in 1..{num_examples} or a fraction "
                     "in (0, 1]")
    count = int(size)
  elif isinstance(size, numbers.Real) and not isinstance(size, bool):
    if not 0.0 < size <= 1.0:
      raise NTAError(f"subset fraction {size} is out of range: use a fraction in (0, 1] or a count in "
                     f"1..{num_examples}")
    count = max(1, min(num_examples, round(size * num_examples)))
  else:
    raise NTAError(f"subset size must be a count (int) or a fraction (float), got {size!r}")
  rng = np.random.default_rng([seed, _SUBSET_STREAM])
  return np.sort(rng.choice(num_examples, count, replace=False)).astype(np.int64)


def _sample_shape(split: Split, input_shape: Sequence[int] | None) -> tuple:
  """The per-sample shape to reshape to; its size must match the split's pixels per sample."""
  own = tuple(split.x.shape[1:])
  if input_shape is None:
    return own
  shape = tuple(int(d) for d in input_shape)
  if math.prod(shape) != math.prod(own) or any(d < 1 for d in shape):
    raise NTAError(f"input_shape {shape} has {math.prod(shape)} values per sample but {split.name} has "
                   f"{math.prod(own)} (shape {own}); use a shape with the same number of values")
  return shape


def train_dataset(split: Split, batch_size: int, seed: int, num_epochs: int, initial_epoch: int = 0,
                  target: str = "labels", input_shape: Sequence[int] | None = None) -> tf.data.Dataset:
  """The training rounds: minibatches of epochs ``initial_epoch .. num_epochs - 1``.

  Epoch e visits the examples in the order :func:`epoch_permutation` (N, seed, e), cut into batches of
  ``batch_size``; the last batch of an epoch may be smaller and no batch spans two epochs, so every epoch
  has :func:`steps_per_epoch` rounds and a run restarted at ``initial_epoch`` continues the exact stream.
  Images stay uint8 in memory and are scaled per batch.

  Args:
    split: the training split (uint8 images).
    batch_size: examples per round.
    seed: the run's seed (>= 0).
    num_epochs: one past the last epoch to produce.
    initial_epoch: the first epoch to produce (0 for a fresh run, the resumed epoch otherwise).
    target: "labels" (y is the int64 label) or "input" (y is the input itself, for the autoencoder).
    input_shape: per-sample shape of x, e.g. (784,) for the autoencoder; default the split's own
      (H, W, C). Must hold as many values as a sample.

  Returns:
    A dataset of dicts with "x": float32 (batch, *input_shape) in [0, 1]; "y": int64 (batch,) or, for
    target="input", the same tensor as "x"; "index": int64 (batch,), the examples' positions in ``split``.

  Raises:
    NTAError: bad sizes, epochs, target or input_shape, or non-uint8 images.
  """
  batch_size = _check_int(batch_size, "batch_size", 1)
  seed = _check_int(seed, "seed", 0)
  num_epochs = _check_int(num_epochs, "num_epochs", 0)
  initial_epoch = _check_int(initial_epoch, "initial_epoch", 0)
  if initial_epoch > num_epochs:
    raise NTAError(f"initial_epoch {initial_epoch} is past num_epochs {num_epochs}")
  if target not in ("labels", "input"):
    raise NTAError(f"target must be 'labels' or 'input' (autoencoder), got {target!r}")
  if split.x.dtype != np.uint8:
    raise NTAError(f"{split.name} images are {split.x.dtype}, expected uint8 as nta.data.load returns them")
  shape = _sample_shape(split, input_shape)
  n = len(split.x)
  images = tf.constant(split.x)
  labels = tf.constant(np.asarray(split.y, np.int64))

  def order(epoch):
    return tf.ensure_shape(
        tf.numpy_function(lambda e: epoch_permutation(n, seed, int(e)), [epoch], tf.int64, stateful=False),
        [n])

  def lookup(index):
    x = tf.reshape(tf.cast(tf.gather(images, index), tf.float32) / 255.0, (-1,) + shape)
    return {"x": x, "y": x if target == "input" else tf.gather(labels, index), "index": index}

  epochs = tf.data.Dataset.range(initial_epoch, num_epochs)
  # Batching inside flat_map keeps each epoch's last partial batch apart from the next epoch.
  batches = epochs.map(order).flat_map(lambda o: tf.data.Dataset.from_tensor_slices(o).batch(batch_size))
  return batches.map(lookup, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True) \
      .prefetch(tf.data.AUTOTUNE)


def eval_arrays(split: Split, indices: np.ndarray | None = None,
                input_shape: Sequence[int] | None = None) -> np.ndarray:
  """Scaled inputs for evaluation and inference.

  Args:
    split: a split (uint8 images).
    indices: optional int positions in ``split`` (shape (n,)), e.g. :func:`fixed_subset`; default all.
    input_shape: per-sample shape as in :func:`train_dataset`; default the split's own.

  Returns:
    float32 (n, *input_shape) in [0, 1].
  """
  return eval_images(split, indices, input_shape).astype(np.float32) / 255.0


def eval_images(split: Split, indices: np.ndarray | None = None,
                input_shape: Sequence[int] | None = None) -> np.ndarray:
  """The unscaled uint8 images of :func:`eval_arrays` (same arguments), a quarter of the bytes; scale them
  by ``float32(x) / 255`` as :func:`train_dataset` does."""
  shape = _sample_shape(split, input_shape)
  x = split.x
  if indices is not None:
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
      raise NTAError(f"indices must be a 1-D integer array, got dtype {indices.dtype} shape {indices.shape}")
    bad = indices[(indices < 0) | (indices >= len(x))]
    if bad.size:
      raise NTAError(f"index {int(bad[0])} is out of range for {split.name} with {len(x)} examples")
    if indices.size and np.all(np.diff(indices) == 1):
      x = x[int(indices[0]):int(indices[-1]) + 1]  # a run of positions: a view, not a copy
    else:
      x = x[indices.astype(np.int64)]
  return x.reshape((len(x),) + shape)


# ----------------------------------------------------------------------------------------------------------


def _main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m nta.data", description=__doc__.splitlines()[0])
  parser.add_argument("--build-sample", action="store_true", help="(re)build the embedded MNIST sample")
  parser.add_argument("--src", help="folder with the original MNIST IDX files (required with --build-sample)")
  parser.add_argument("--out", default=str(Path(__file__).with_name("sample_data") / SAMPLE_FILE))
  parser.add_argument("--seed", type=int, default=SAMPLE_SEED)
  args = parser.parse_args(argv)
  if not args.build_sample or not args.src:
    parser.error("usage: python -m nta.data --build-sample --src FOLDER_WITH_MNIST_IDX_FILES")
  try:
    out = build_sample(args.src, args.out, args.seed)
  except NTAError as e:
    raise SystemExit(f"error: {e}") from None
  print(f"wrote {out} ({out.stat().st_size:,} bytes)")


if __name__ == "__main__":
  _main()
