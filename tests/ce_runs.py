"""Cross-entropy Taylor records of tiny nets for the nta.hindsight tests: conv and dense nets trained through
``nta.training.fit`` on random data with the recorder and a spy that hands each round's weights and batch to the
host, and the model zoo with A.5's reference G per round."""


import keras
import numpy as np
import pytest
import tensorflow as tf

from nta import data
from nta import models
from nta import optimizers
from nta import taylor
from nta import training
from nta.hindsight import records as ce_records
from nta.recorders import Recorder

from margins_lp import separated_rows
import zoo
import tolerances as tol


TOL = tol.EXACT


N_EXAMPLES, BATCH, EPOCHS = 88, 32, 2  # 3 rounds per epoch, the last one of 24 examples (zero-padded records)


class _Spy(Recorder):
  """Hands every round's batch, weights and gradients to the host."""
  name = "spy"

  def __init__(self):
    self.rounds = []

  def update(self, rt):
    out = {"x": rt.x, "y": rt.y, "loss": rt.loss}
    for i, ((k, b), (gk, gb)) in enumerate(zip(rt.weights, rt.grads)):
      out.update({f"k{i}": k, f"b{i}": b, f"gk{i}": gk, f"gb{i}": gb})
    return out

  def consume(self, step, outputs):
    self.rounds.append((step, outputs))


def _convnet(dtype):
  # Every path: conv1 + ReLU + overlapping max-pool (J at the windows' choices), conv2 + ReLU + 2x2 max-pool
  # (tiled: G by per-offset matmuls), conv3 + ReLU (every position), linear logits.
  return keras.Sequential([
      keras.Input((8, 8, 2), dtype=dtype),
      keras.layers.Conv2D(3, 3, padding="same", activation="relu", dtype=dtype, name="conv1"),
      keras.layers.MaxPooling2D(2, strides=1, dtype=dtype, name="pool1"),
      keras.layers.Conv2D(3, 2, activation="relu", dtype=dtype, name="conv2"),
      keras.layers.MaxPooling2D(2, dtype=dtype, name="pool2"),
      keras.layers.Conv2D(3, 1, activation="relu", dtype=dtype, name="conv3"),
      keras.layers.Flatten(dtype=dtype), keras.layers.Dense(3, dtype=dtype, name="logits")], name="tinyconv")


def _densenet(dtype):
  return keras.Sequential([keras.Input((12,), dtype=dtype),
                           keras.layers.Dense(5, activation="relu", dtype=dtype, name="hidden"),
                           keras.layers.Dense(3, dtype=dtype, name="logits")], name="tinydense")


def _widenet(dtype):
  # 48 sparse inputs (a tenth lit, as rare pixels): rounds of 32 samples whose inputs are independent at first,
  # and later some samples that light an input no other does.
  return keras.Sequential([keras.Input((48,), dtype=dtype),
                           keras.layers.Dense(4, activation="relu", dtype=dtype, name="hidden"),
                           keras.layers.Dense(3, dtype=dtype, name="logits")], name="tinywide")


def _split(shape, seed=0, n=N_EXAMPLES, lit=1.0):
  rng = np.random.default_rng(seed)
  x, y = rng.integers(0, 256, (n, *shape), dtype=np.uint8), rng.integers(0, 3, n)
  if lit < 1.0:  # drawn after the rest: the other nets' data stay as they were
    x = np.where(rng.random(x.shape) < lit, x, 0).astype(np.uint8)
  return data.Split(x, y, "random/train", 3)


def _fit(workdir, build, dtype, recorders, epochs=EPOCHS, callbacks=(), loss="cross_entropy", lr=0.5):
  keras.utils.set_random_seed(0)
  net = build(dtype)
  spec = models.inspect(net)
  split = _split(tuple(net.input_shape[1:]), lit=0.1 if build is _widenet else 1.0)

  def dataset_fn(initial_epoch):
    ds = data.train_dataset(split, BATCH, 0, epochs, initial_epoch, input_shape=spec.input_shape)
    return ds.map(lambda d: {**d, "x": tf.cast(d["x"], dtype)})

  return training.fit(net, dataset_fn, N_EXAMPLES, loss=loss, optimizer=optimizers.make_optimizer("sgd", lr),
                      batch_size=BATCH, num_epochs=epochs, workdir=workdir, recorders=recorders, verbose=0,
                      callbacks=list(callbacks), train=split), spec


RUNS = {  # name: (net, dtype, recorder options)
    "conv64": (_convnet, "float64", {"representations": {0: "jacobian", 1: "jacobian", 2: "jacobian"},
                                     "replay": False}),
    "conv32_tensor_every2": (_convnet, "float32", {"representations": {0: "tensor", 1: "tensor", 2: "tensor"},
                                                   "record_every": 2, "replay": False}),
    "dense64": (_densenet, "float64", {"replay": False}),
    "dense32_tensor": (_densenet, "float32", {"representations": {0: "tensor"}, "replay": False}),
    # Each round stored as itself (input, weights, choices); the forms above rebuilt when the solve reads them.
    "conv64_replay": (_convnet, "float64", {"representations": {0: "jacobian", 1: "jacobian", 2: "tensor"},
                                            "replay": True}),
    "conv32_replay_every2": (_convnet, "float32", {"representations": {0: "tensor", 1: "jacobian", 2: "jacobian"},
                                                   "record_every": 2, "replay": True}),
    "dense32_replay": (_densenet, "float32", {"replay": True}),
    "wide64": (_widenet, "float64", {"replay": False}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  cache = {}

  def get(name):
    if name not in cache:
      build, dtype, options = RUNS[name]
      workdir = str(tmp_path_factory.mktemp(name))
      spy, rec = _Spy(), ce_records.CrossEntropyTaylorRecorder(**options)
      result, spec = _fit(workdir, build, dtype, [spy, rec])
      states = {}
      for step, r in spy.rounds:
        weights = [(r[f"k{i}"], r[f"b{i}"]) for i in range(len(spec.layers))]
        states[step] = taylor.snapshot(spec, r["x"], r["y"], weights)
      cache[name] = (workdir, spec, dtype, result, dict(spy.rounds), states, rec)
    return cache[name]
  return get


# ----------------------------------------------------------------------------------------------------------
# The model zoo: residual sums with BatchNormalization (G by forward passes: the batch is coupled), dropout,
# average pooling, LeakyReLU, branches.


def _zoo_fit(tmp_path, name, **options):
  """Two epochs of two rounds; every input appears in its batch once with each label, so that each summed
  Taylor loss is coercive up to the softmax's constant shift and has a minimiser. ``options`` go to the
  recorder."""
  net = zoo.float64(name, seed=5)
  spec = models.inspect(net)
  rng = np.random.default_rng(7)
  x = np.repeat(rng.random((4, *spec.input_shape)), 3, axis=0)
  y = np.tile(np.arange(3), 4)

  def dataset_fn(initial_epoch):
    ds = tf.data.Dataset.from_tensor_slices({"x": x, "y": y, "index": np.arange(12)})
    return ds.batch(6).repeat(2 - initial_epoch)

  reference = zoo.Reference()
  rec = ce_records.CrossEntropyTaylorRecorder(**{"layers": list(range(len(spec.layers))), **options})
  training.fit(net, dataset_fn, 12, loss="cross_entropy", optimizer=optimizers.make_optimizer("sgd", 0.5),
               batch_size=6, num_epochs=2, workdir=str(tmp_path), recorders=[rec, reference], verbose=0)
  rec.close()
  return spec, rec, reference.rounds


def _terms(rounds, layer, columns):
  """(G_n (B, p_L, D), w_n (D,), f_n, y_n) of the given rounds: A.5's reference G restricted to ``columns`` of
  the flattened (K, units) weights."""
  return [(r[f"g{layer}"].reshape(*r["f"].shape, -1)[..., columns], r[f"w{layer}"].reshape(-1)[columns], r["f"],
           r["y"].astype(int)) for r in rounds]


def _materialised(rounds, layer, columns):
  """Σ_n mean_b CE(f + G (v − w)) over the given rounds of A.5's reference G, restricted to ``columns`` of the
  flattened (K, units) weights: (value, gradient) as a function of v."""
  return summed_cross_entropy(_terms(rounds, layer, columns))


def separable(rounds, layer, columns) -> bool:
  """Whether the summed Taylor loss of ``_materialised`` has no minimiser: some direction raises a margin
  (G v)_y − (G v)_o of a recorded sample while raising or keeping every other (``separated_rows``)."""
  rows = [g[b, y[b]] - g[b, o] for g, _, _, y in _terms(rounds, layer, columns)
          for b in range(len(y)) for o in range(g.shape[1]) if o != y[b]]
  return bool(separated_rows(rows).any())


def summed_cross_entropy(terms, dropped=None):
  """v -> (Σ_n mean_b CE(f_n + G_n (v − w_n), y_n), gradient) for terms (G_n (B, p_L, D), w_n (D,), f_n, y_n);
  with ``dropped`` ((B, p_L) bool per term), those classes' logits at −∞."""
  if dropped is None:
    dropped = [np.zeros(f.shape, bool) for _, _, f, _ in terms]

  def fun(v):
    value, grad = 0.0, np.zeros_like(v)
    for (g, w, f, y), drop in zip(terms, dropped):
      logits = np.where(drop, -np.inf, f + g @ (v - w))
      logits -= logits.max(1, keepdims=True)
      e = np.exp(logits)
      total = e.sum(1, keepdims=True)
      p = e / total
      # log p_y from the logits: p_y itself underflows to 0 far out (scipy's line searches go there).
      value -= np.mean(logits[np.arange(len(y)), y] - np.log(total[:, 0]))
      p[np.arange(len(y)), y] -= 1
      grad += np.einsum("bo,bod->d", p, g) / len(y)
    return value, grad
  return fun


