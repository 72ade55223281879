"""Tests for nta.data: the three sources, their error messages, and the epoch/batch order."""

import gzip
import pickle
import re
import time
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from nta import data
from nta.errors import NTAError

SHARED_MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"

# Class counts of the original MNIST files.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --- helpers ----------------------------------------------------------------------------------------------


def write_idx(path: Path, magic: int, array: np.ndarray, gz: bool = False) -> Path:
  """Writes ``array`` as an IDX file (big-endian header), gzipped when ``gz`` (then ``path`` gets .gz)."""
  raw = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
  raw += np.asarray(array, np.uint8).tobytes()
  if gz:
    path = path.with_name(path.name + ".gz")
    raw = gzip.compress(raw)
  path.write_bytes(raw)
  return path


def tiny_idx(folder: Path, gz: bool = False, n_train: int = 20, n_test: int = 10, hw=(4, 3)):
  """Tiny MNIST-format files whose image i is filled with the value i and has label i % 10."""
  arrays = {}
  for part, n in (("train", n_train), ("test", n_test)):
    x = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n,) + hw).copy()
    y = (np.arange(n) % 10).astype(np.uint8)
    images, labels = data.IDX_FILES[part]
    write_idx(folder / images, data.IDX_IMAGES_MAGIC, x, gz)
    write_idx(folder / labels, data.IDX_LABELS_MAGIC, y, gz)
    arrays[part] = (x, y)
  return arrays


def cifar_pixel(i, c, r, w):
  """A known pixel value for image i, channel c, row r, column w of the fake CIFAR-10 batches."""
  return (7 * i + 50 * c + 3 * r + w) % 256


def fake_cifar(folder: Path, per_batch: int = 3, skip=()) -> Path:
  """Writes cifar-10-batches-py/ under ``folder`` with pickled batches in the original CHW row layout."""
  out = folder / data.CIFAR10_DIR
  out.mkdir(parents=True)
  i = np.arange(6 * per_batch)[:, None, None, None]
  c, r, w = np.arange(3)[:, None, None], np.arange(32)[:, None], np.arange(32)
  chw = cifar_pixel(i, c, r, w).astype(np.uint8)  # (N, 3, 32, 32)
  names = data.CIFAR10_TRAIN_BATCHES + (data.CIFAR10_TEST_BATCH,)
  for b, name in enumerate(names):
    if name in skip:
      continue
    rows = slice(b * per_batch, (b + 1) * per_batch)
    batch = {b"data": chw[rows].reshape(per_batch, 3072), b"labels": list(range(b, b + per_batch)),
             b"batch_label": name.encode()}
    (out / name).write_bytes(pickle.dumps(batch, protocol=2))
  return out


def toy_split(n: int = 10, shape=(2, 2, 1)) -> data.Split:
  """Image i is filled with the value 10 * i, label i % 3, so a batch shows which examples it holds."""
  x = np.broadcast_to((10 * np.arange(n)).astype(np.uint8).reshape((n,) + (1,) * len(shape)),
                      (n,) + shape).copy()
  return data.Split(x, (np.arange(n) % 3).astype(np.int64), "toy/train", 3)


def batches(ds):
  return [{k: v.numpy() for k, v in b.items()} for b in ds]


# --- sample -----------------------------------------------------------------------------------------------


def test_sample_splits():
  train, test = data.load("sample")
  assert (train.x.shape, test.x.shape) == ((6000, 28, 28, 1), (1000, 28, 28, 1))
  assert (train.x.dtype, train.y.dtype, test.x.dtype, test.y.dtype) == (np.uint8, np.int64, np.uint8, np.int64)
  assert train.y.shape == (6000,) and test.y.shape == (1000,)
  np.testing.assert_array_equal(np.bincount(train.y, minlength=10), [600] * 10)
  np.testing.assert_array_equal(np.bincount(test.y, minlength=10), [100] * 10)
  assert train.x.max() == 255 and train.x.min() == 0
  assert (train.name, test.name, train.num_classes) == ("mnist_sample/train", "mnist_sample/test", 10)


def test_sample_file_is_small_and_documented():
  path = Path(str(data.sample_path()))
  assert path.stat().st_size <= 5 * 2**20
  assert (path.parent / "README.md").is_file()


def test_sample_train_size_is_a_prefix():
  full, full_test = data.load("sample")
  train, test = data.load("sample", train_size=100)
  np.testing.assert_array_equal(train.x, full.x[:100])
  np.testing.assert_array_equal(train.y, full.y[:100])
  assert train.name == "mnist_sample/train[:100]"
  assert len(test.y) == len(full_test.y) == 1000


@pytest.mark.parametrize("size", [0, -1, 6001, 2.5, True])
def test_train_size_out_of_range(size):
  with pytest.raises(NTAError, match=r"train_size=.*1\.\.6000"):
    data.load("sample", train_size=size)


def test_sample_only_embeds_mnist():
  with pytest.raises(NTAError, match="only mnist.*'cifar10'"):
    data.load("sample", "cifar10")


def test_unknown_source_names_valid_ones():
  with pytest.raises(NTAError, match="unknown data source 'web'.*tfds, files, sample"):
    data.load("web")


def test_build_sample_is_stratified_and_reproducible(tmp_path):
  src = tmp_path / "src"
  src.mkdir()
  tiny_idx(src, gz=True, n_train=60, n_test=30)
  per_class = {"train": 3, "test": 2}
  a = np.load(data.build_sample(src, tmp_path / "a.npz", seed=5, per_class=per_class))
  b = np.load(data.build_sample(src, tmp_path / "b.npz", seed=5, per_class=per_class))
  c = np.load(data.build_sample(src, tmp_path / "c.npz", seed=6, per_class=per_class))
  for key in ("x_train", "y_train", "train_index", "x_test", "y_test", "test_index"):
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["train_index"], c["train_index"])
  np.testing.assert_array_equal(np.bincount(a["y_train"]), [3] * 10)
  np.testing.assert_array_equal(np.bincount(a["y_test"]), [2] * 10)
  assert np.all(np.diff(a["train_index"]) > 0)
  # Tiny image i is filled with i, so each kept image must match its recorded position.
  np.testing.assert_array_equal(a["x_train"][:, 0, 0], a["train_index"])
  assert a["x_train"].shape == (30, 4, 3)


# --- files: the real MNIST distribution ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_mnist():
  if not (SHARED_MNIST / "train-images-idx3-ubyte.gz").is_file():
    pytest.skip(f"../shared/data/mnist not present: no original MNIST files at {SHARED_MNIST}")
  return data.load("files", "mnist", str(SHARED_MNIST))


def test_files_mnist(shared_mnist):
  train, test = shared_mnist
  assert (train.x.shape, test.x.shape) == ((60000, 28, 28, 1), (10000, 28, 28, 1))
  assert (train.x.dtype, train.y.dtype) == (np.uint8, np.int64)
  np.testing.assert_array_equal(np.bincount(train.y), MNIST_TRAIN_COUNTS)
  np.testing.assert_array_equal(np.bincount(test.y), MNIST_TEST_COUNTS)
  np.testing.assert_array_equal(train.y[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
  np.testing.assert_array_equal(test.y[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
  assert (train.name, test.name) == ("mnist/train", "mnist/test")


def test_sample_matches_the_original_files(shared_mnist):
  train, test = shared_mnist
  with np.load(str(data.sample_path())) as npz:
    for part, split in (("train", train), ("test", test)):
      index = npz[f"{part}_index"]
      np.testing.assert_array_equal(npz[f"x_{part}"], split.x[index, ..., 0])
      np.testing.assert_array_equal(npz[f"y_{part}"], split.y[index])


def test_files_plain_and_gzipped_agree(shared_mnist, tmp_path):
  for base in data.IDX_FILES["test"]:
    (tmp_path / base).write_bytes(gzip.decompress((SHARED_MNIST / (base + ".gz")).read_bytes()))
  images, labels = data.load_idx_pair(tmp_path, "test")
  _, test = shared_mnist
  np.testing.assert_array_equal(images, test.x)
  np.testing.assert_array_equal(labels, test.y)


# --- files: tiny IDX files ----------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_files_tiny_idx(tmp_path, gz, name):
  arrays = tiny_idx(tmp_path, gz)
  train, test = data.load("files", name, str(tmp_path))
  for split, (x, y), part in ((train, arrays["train"], "train"), (test, arrays["test"], "test")):
    np.testing.assert_array_equal(split.x, x[..., None])
    np.testing.assert_array_equal(split.y, y)
    assert split.y.dtype == np.int64 and split.name == f"{name}/{part}" and split.num_classes == 10


def test_files_gzip_detected_from_content(tmp_path):
  arrays = tiny_idx(tmp_path, gz=True)
  for gz_path in tmp_path.glob("*.gz"):
    gz_path.rename(gz_path.with_suffix(""))  # a gzipped file saved without its .gz
  train, _ = data.load("files", "mnist", str(tmp_path))
  np.testing.assert_array_equal(train.y, arrays["train"][1])


def test_files_missing_file(tmp_path):
  tiny_idx(tmp_path, gz=True)
  (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
  with pytest.raises(NTAError) as e:
    data.load("files", "mnist", str(tmp_path))
  msg = str(e.value)
  assert "missing t10k-labels-idx1-ubyte[.gz]" in msg and str(tmp_path) in msg
  assert "train-images-idx3-ubyte[.gz]" in msg and "\n" not in msg


@pytest.mark.parametrize("gz", [False, True])
def test_files_wrong_magic(tmp_path, gz):
  tiny_idx(tmp_path, gz)
  # Labels where images belong: magic 0x801 instead of 0x803.
  bad = write_idx(tmp_path / "train-images-idx3-ubyte", data.IDX_LABELS_MAGIC, np.zeros(20, np.uint8), gz)
  with pytest.raises(NTAError, match="magic number 0x00000801, expected 0x00000803") as e:
    data.load("files", "mnist", str(tmp_path))
  assert str(bad) in str(e.value)


@pytest.mark.parametrize("gz", [False, True])
def test_files_truncated(tmp_path, gz):
  tiny_idx(tmp_path, gz)
  x = np.zeros((20, 4, 3), np.uint8)
  raw = data.IDX_IMAGES_MAGIC.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in x.shape)
  raw += x.tobytes()[:-7]
  path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
  path.write_bytes(gzip.compress(raw) if gz else raw)
  with pytest.raises(NTAError, match=r"is truncated: its header \(20, 4, 3\) needs 240 data bytes, it has 233") \
      as e:
    data.load("files", "mnist", str(tmp_path))
  assert str(path) in str(e.value)


def test_files_cut_off_gzip(tmp_path):
  tiny_idx(tmp_path, gz=True)
  path = tmp_path / "train-images-idx3-ubyte.gz"
  path.write_bytes(path.read_bytes()[:-12])
  with pytest.raises(NTAError, match="could not read IDX file") as e:
    data.load("files", "mnist", str(tmp_path))
  assert str(path) in str(e.value)


def test_files_count_mismatch(tmp_path):
  tiny_idx(tmp_path)
  write_idx(tmp_path / "t10k-labels-idx1-ubyte", data.IDX_LABELS_MAGIC, np.zeros(9, np.uint8))
  with pytest.raises(NTAError, match="has 10 images but .*t10k-labels-idx1-ubyte has 9 labels"):
    data.load("files", "mnist", str(tmp_path))


def test_files_label_out_of_range(tmp_path):
  tiny_idx(tmp_path)
  write_idx(tmp_path / "t10k-labels-idx1-ubyte", data.IDX_LABELS_MAGIC, np.full(10, 12, np.uint8))
  with pytest.raises(NTAError, match=r"labels in \[12, 12\], expected 0\.\.9"):
    data.load("files", "mnist", str(tmp_path))


def test_files_needs_a_folder_and_a_known_name(tmp_path):
  with pytest.raises(NTAError, match="needs data_dir"):
    data.load("files", "mnist")
  with pytest.raises(NTAError, match="is not a folder") as e:
    data.load("files", "mnist", str(tmp_path / "nowhere"))
  assert str(tmp_path / "nowhere") in str(e.value)
  with pytest.raises(NTAError, match="reads mnist, fashion_mnist, cifar10, not 'svhn'"):
    data.load("files", "svhn", str(tmp_path))


# --- files: CIFAR-10 python batches -------------------------------------------------------------------------


@pytest.mark.parametrize("inside", [False, True])
def test_files_cifar10_nhwc(tmp_path, inside):
  batch_dir = fake_cifar(tmp_path, per_batch=3)
  train, test = data.load("files", "cifar10", str(batch_dir if inside else tmp_path))
  assert (train.x.shape, test.x.shape) == ((15, 32, 32, 3), (3, 32, 32, 3))
  assert train.x.dtype == np.uint8 and train.y.dtype == np.int64
  i, r, w, c = np.meshgrid(np.arange(15), np.arange(32), np.arange(32), np.arange(3), indexing="ij")
  np.testing.assert_array_equal(train.x, cifar_pixel(i, c, r, w))
  np.testing.assert_array_equal(test.x, cifar_pixel(i[:3] + 15, c[:3], r[:3], w[:3]))
  assert train.x[1, 2, 3, 2] == cifar_pixel(1, 2, 2, 3)  # image 1, row 2, column 3, blue
  np.testing.assert_array_equal(train.y, [b + k for b in range(5) for k in range(3)])
  np.testing.assert_array_equal(test.y, [5, 6, 7])
  assert (train.name, test.name, train.num_classes) == ("cifar10/train", "cifar10/test", 10)


def test_files_cifar10_missing_batch(tmp_path):
  fake_cifar(tmp_path, skip=("data_batch_3",))
  with pytest.raises(NTAError, match="missing CIFAR-10 batch.*data_batch_3") as e:
    data.load("files", "cifar10", str(tmp_path))
  assert str(tmp_path / data.CIFAR10_DIR) in str(e.value)


def test_files_cifar10_corrupt_batch(tmp_path):
  batch_dir = fake_cifar(tmp_path)
  (batch_dir / "test_batch").write_bytes(b"not a pickle")
  with pytest.raises(NTAError, match="could not be read") as e:
    data.load("files", "cifar10", str(tmp_path))
  assert str(batch_dir / "test_batch") in str(e.value)
  (batch_dir / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
  with pytest.raises(NTAError, match=r"does not hold data \(N, 3072\)"):
    data.load("files", "cifar10", str(tmp_path))


# --- tfds (no network: tfds' builder is replaced or cannot download) -----------------------------------------


class FakeBuilder:
  """A prepared tfds builder serving given arrays, or failing to download."""

  def __init__(self, arrays=None, error=None, features=None):
    self.arrays, self.error = arrays, error
    self.info = types.SimpleNamespace(features=features or {
        "image": object(), "label": types.SimpleNamespace(num_classes=10)})

  def download_and_prepare(self):
    if self.error:
      raise self.error

  def is_prepared(self):
    return True  # as far as the offline check goes: the download itself may still fail

  def as_dataset(self, split, batch_size, as_supervised):
    assert (split, batch_size, as_supervised) == (["train", "test"], -1, True)
    return [tuple(tf.constant(a) for a in self.arrays[s]) for s in split]


@pytest.fixture
def tfds_module():
  return pytest.importorskip("tensorflow_datasets")


def test_tfds_download_failure(tfds_module, tmp_path, monkeypatch):
  calls = []

  def builder(name, data_dir):
    calls.append((name, data_dir))
    return FakeBuilder(error=ConnectionError("Failed to reach storage.googleapis.com\nmore detail"))

  monkeypatch.setattr(tfds_module, "builder", builder)
  with pytest.raises(NTAError) as e:
    data.load("tfds", "cifar10", str(tmp_path))
  msg = str(e.value)
  assert calls == [("cifar10", str(tmp_path))]
  assert msg.startswith(f"tfds could not load 'cifar10' into {tmp_path}: ConnectionError: Failed to reach")
  assert "--config.data.source=files" in msg and "\n" not in msg


def test_tfds_real_builder_without_network(tfds_module, tmp_path, monkeypatch):
  def no_network(self, *args, **kwargs):
    raise OSError("network is unreachable")

  monkeypatch.setattr(tfds_module.core.DatasetBuilder, "download_and_prepare", no_network)
  monkeypatch.setattr(data, "_online", lambda: True)  # a network that then fails
  bogus = tmp_path / "bogus"
  with pytest.raises(NTAError, match=re.escape(f"tfds could not load 'mnist' into {bogus}: OSError: network")):
    data.load("tfds", "mnist", str(bogus))


def test_tfds_offline_fails_in_seconds_with_the_offline_way(tfds_module, tmp_path, monkeypatch):
  # tfds itself would retry its download for minutes, printing each attempt.
  assert data._online(host="nta-no-such-host.invalid", timeout=1.0) is False

  def download(self, *args, **kwargs):
    raise AssertionError("no download may be tried offline")

  monkeypatch.setattr(tfds_module.core.DatasetBuilder, "download_and_prepare", download)
  monkeypatch.setattr(data, "_online", lambda: False)
  start = time.time()
  with pytest.raises(NTAError, match=r"tfds has no 'mnist' in .* and there is no network to download it; use the "
                                     r"original files offline with --config.data.source=files") as e:
    data.load("tfds", "mnist", str(tmp_path / "empty"))
  assert time.time() - start < 10 and "\n" not in str(e.value)


def test_tfds_missing_dependency(tfds_module, monkeypatch):
  error = ModuleNotFoundError("No module named 'importlib_resources'", name="importlib_resources")
  monkeypatch.setattr(tfds_module, "builder", lambda name, data_dir: FakeBuilder(error=error))
  with pytest.raises(NTAError, match="pip install importlib_resources or use --config.data.source=files"):
    data.load("tfds", "mnist")


def test_tfds_unknown_name(tfds_module):
  with pytest.raises(NTAError, match="'no_such_dataset' is not a tensorflow-datasets dataset") as e:
    data.load("tfds", "no_such_dataset")
  assert "\n" not in str(e.value)


def test_tfds_not_image_classification(tfds_module, monkeypatch):
  monkeypatch.setattr(tfds_module, "builder", lambda name, data_dir: FakeBuilder(features={"text": object()}))
  with pytest.raises(NTAError, match="'imdb_reviews' is not an image classification dataset"):
    data.load("tfds", "imdb_reviews")


def test_tfds_prepared_dataset(tfds_module, monkeypatch):
  rng = np.random.default_rng(0)
  arrays = {s: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
            for s, n in (("train", 12), ("test", 4))}
  monkeypatch.setattr(tfds_module, "builder", lambda name, data_dir: FakeBuilder(arrays))
  train, test = data.load("tfds", "cifar10", train_size=5)
  np.testing.assert_array_equal(train.x, arrays["train"][0][:5])
  np.testing.assert_array_equal(test.y, arrays["test"][1])
  assert train.y.dtype == np.int64 and train.x.dtype == np.uint8
  assert (train.name, test.name, test.num_classes) == ("cifar10/train[:5]", "cifar10/test", 10)


# --- epochs, batches, subsets -------------------------------------------------------------------------------


def test_steps_per_epoch():
  assert data.steps_per_epoch(60000, 64) == 938
  assert data.steps_per_epoch(10, 5) == 2
  assert data.steps_per_epoch(11, 5) == 3
  assert data.steps_per_epoch(0, 5) == 0
  for bad in ((10, 0), (10, 2.0), (-1, 4)):
    with pytest.raises(NTAError, match="must be an integer"):
      data.steps_per_epoch(*bad)


def test_epoch_permutation():
  p = data.epoch_permutation(100, seed=3, epoch=7)
  assert p.dtype == np.int64 and p.shape == (100,)
  np.testing.assert_array_equal(np.sort(p), np.arange(100))
  np.testing.assert_array_equal(p, data.epoch_permutation(100, 3, 7))
  np.testing.assert_array_equal(p, np.random.default_rng([3, 7]).permutation(100))
  assert not np.array_equal(p, data.epoch_permutation(100, 3, 8))
  assert not np.array_equal(p, data.epoch_permutation(100, 4, 7))
  with pytest.raises(NTAError, match="seed must be"):
    data.epoch_permutation(100, -1, 0)


def test_fixed_subset():
  s = data.fixed_subset(60000, 0.01, seed=0)
  assert s.dtype == np.int64 and s.shape == (600,)
  assert np.all(np.diff(s) > 0) and s[0] >= 0 and s[-1] < 60000
  np.testing.assert_array_equal(s, data.fixed_subset(60000, 600, seed=0))
  assert not np.array_equal(s, data.fixed_subset(60000, 600, seed=1))
  np.testing.assert_array_equal(data.fixed_subset(50, 1.0, seed=2), np.arange(50))
  assert data.fixed_subset(50, 0.001, seed=2).shape == (1,)
  # Not the first rows of the epoch-0 order (numpy would give those for default_rng(seed)).
  assert not np.array_equal(np.sort(data.epoch_permutation(60000, 0, 0)[:600]), s)


@pytest.mark.parametrize("size", [0, 101, 0.0, 1.5, -0.1, True, "1%"])
def test_fixed_subset_rejects(size):
  with pytest.raises(NTAError, match="subset"):
    data.fixed_subset(100, size, seed=0)


def test_train_dataset_order_and_batches():
  split = toy_split(10)
  out = batches(data.train_dataset(split, batch_size=4, seed=1, num_epochs=3))
  assert [len(b["index"]) for b in out] == [4, 4, 2] * 3
  for epoch in range(3):
    seen = np.concatenate([b["index"] for b in out[3 * epoch:3 * epoch + 3]])
    np.testing.assert_array_equal(seen, data.epoch_permutation(10, 1, epoch))  # each example once
  for b in out:
    assert b["x"].dtype == np.float32 and b["y"].dtype == np.int64 and b["index"].dtype == np.int64
    assert b["x"].shape == (len(b["index"]), 2, 2, 1)
    assert 0.0 <= b["x"].min() and b["x"].max() <= 1.0
    np.testing.assert_array_equal(b["x"], split.x[b["index"]] / np.float32(255))
    np.testing.assert_array_equal(b["y"], split.y[b["index"]])


def test_train_dataset_is_deterministic_per_seed():
  split = toy_split(10)
  a = batches(data.train_dataset(split, 4, seed=1, num_epochs=2))
  b = batches(data.train_dataset(split, 4, seed=1, num_epochs=2))
  c = batches(data.train_dataset(split, 4, seed=2, num_epochs=2))
  index = lambda bs: np.concatenate([x["index"] for x in bs])
  np.testing.assert_array_equal(index(a), index(b))
  assert not np.array_equal(index(a), index(c))


def test_train_dataset_resume_continues_the_stream():
  split = toy_split(10)
  full = batches(data.train_dataset(split, 3, seed=5, num_epochs=4))
  resumed = batches(data.train_dataset(split, 3, seed=5, num_epochs=4, initial_epoch=2))
  per_epoch = data.steps_per_epoch(10, 3)
  assert len(resumed) == 2 * per_epoch
  for got, want in zip(resumed, full[2 * per_epoch:]):
    for key in ("x", "y", "index"):
      np.testing.assert_array_equal(got[key], want[key])
  assert batches(data.train_dataset(split, 3, seed=5, num_epochs=4, initial_epoch=4)) == []


def test_train_dataset_autoencoder_target_and_shape():
  split = toy_split(10)
  ds = data.train_dataset(split, 4, seed=0, num_epochs=1, target="input", input_shape=(4,))
  assert ds.element_spec["x"].shape.as_list() == [None, 4]
  for b in batches(ds):
    assert b["y"].dtype == np.float32
    np.testing.assert_array_equal(b["y"], b["x"])
    np.testing.assert_array_equal(b["x"], split.x[b["index"]].reshape(-1, 4) / np.float32(255))


def test_train_dataset_sample_epoch():
  train, _ = data.load("sample", train_size=1000)
  ds = data.train_dataset(train, 128, seed=0, num_epochs=1, target="input", input_shape=(784,))
  out = batches(ds)
  assert len(out) == data.steps_per_epoch(1000, 128) == 8 and len(out[-1]["index"]) == 1000 - 7 * 128
  np.testing.assert_array_equal(np.sort(np.concatenate([b["index"] for b in out])), np.arange(1000))


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be"),
    (dict(initial_epoch=3), "initial_epoch 3 is past num_epochs 2"),
    (dict(target="logits"), "target must be"),
    (dict(input_shape=(5,)), r"input_shape \(5,\) has 5 values per sample but toy/train has 4"),
])
def test_train_dataset_rejects(kwargs, match):
  args = dict(batch_size=4, seed=0, num_epochs=2) | kwargs
  with pytest.raises(NTAError, match=match):
    data.train_dataset(toy_split(10), **args)


def test_train_dataset_rejects_float_images():
  split = toy_split(10)
  split.x = split.x.astype(np.float32)
  with pytest.raises(NTAError, match="float32, expected uint8"):
    data.train_dataset(split, 4, seed=0, num_epochs=1)


def test_eval_arrays():
  split = toy_split(10)
  x = data.eval_arrays(split)
  assert x.dtype == np.float32 and x.shape == (10, 2, 2, 1)
  np.testing.assert_array_equal(x, split.x / np.float32(255))
  sub = data.eval_arrays(split, np.array([7, 2]), input_shape=(4,))
  assert sub.shape == (2, 4)
  np.testing.assert_array_equal(sub[:, 0], [70 / np.float32(255), 20 / np.float32(255)])
  with pytest.raises(NTAError, match="index 10 is out of range for toy/train with 10 examples"):
    data.eval_arrays(split, np.array([1, 10]))
  with pytest.raises(NTAError, match="input_shape"):
    data.eval_arrays(split, input_shape=(2, 3))


@pytest.mark.parametrize("indices", [None, [3, 4, 5, 6], [6], [5, 4, 3], [1, 3, 5], [2, 2, 3], []])
def test_eval_images_are_the_unscaled_eval_arrays(indices):
  split = toy_split(10)
  idx = None if indices is None else np.array(indices, np.int64)
  images = data.eval_images(split, idx, input_shape=(4,))
  expected = split.x if idx is None else split.x[idx]
  assert images.dtype == np.uint8 and images.shape == (len(expected), 4)
  np.testing.assert_array_equal(images, expected.reshape(-1, 4))  # runs of positions take the slicing path
  np.testing.assert_array_equal(data.eval_arrays(split, idx, (4,)), images.astype(np.float32) / 255.0)
