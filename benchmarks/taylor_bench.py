"""Benchmark: per-round cost of the Taylor analysis (§2.2, A.5), fast path vs reference, and its overhead in fit.

  python benchmarks/taylor_bench.py [--rounds=10] [--repeats=3] [--fit_rounds=600] [--fit_repeats=5] [--baseline=DIR]

(1) One round of the hindsight analysis with ``nta.taylor``'s fast path against its reference path
    (``method="jacobian"``, the A.5 procedure: the gradient of every output component, assembled into a
    Jacobian). Both run compiled in ``tf.function`` on real MNIST batches; results must agree to
    max |fast - reference| / max |reference| <= 1e-5 (float32) for every output tensor.

    - autoencoder, batch 64, every layer: the per-sample statistics from which the closed-form optimum of
      the squared loss is assembled (``nta.hindsight.squared``): r_l = J_lᵀ e (e = f - y) and the Gram matrix
      M_l = J_lᵀ J_l of J_l = ∂f/∂a_l for the hidden layers; the output layer has M = I in closed form, so
      its neuron-scale ‖J_α‖² is computed instead. Budget: fast >= 100x faster than the reference. (The
      reference's Jacobian tensors G_l would take 16.8 GB at batch 64, so its J_l form is used.)
    - convnet on 28x28x1 input, batch 128, layer 1 (conv2): the cross-entropy layer Taylor loss and its
      gradient at a random V_l, what SGD on the Taylor loss evaluates (A.5). The reference builds G_l from
      1,280 backward passes (one per output component), so it is timed on a single round.

(2) Seconds per epoch (60,000 examples) of ``nta.training.fit`` on the autoencoder with a default
    ``nta.hindsight.squared.TaylorRecorder`` (every layer and neuron within its memory budget, horizons reduced to
    the last round) against no recorder, both with the autoencoder config's thread pools (one thread per op,
    two ops at once). Alternating, best of ``--fit_repeats``, after a discarded warm-up fit;
    rounds are timed after 20 warm-up rounds (tracing) and before the final round's solve.
    Budget: ratio <= 2. With ``--baseline=DIR`` (a checkout of an older commit, e.g. ``git worktree add DIR
    COMMIT``) the fit with the recorder is also timed by that checkout's nta and by this one, each in fresh
    processes of ``benchmarks/fit_timing.py``, alternating: the redesign must not be slower than before.

(3) The solve of every recorded quadratic (``nta.solvers.solve_quadratic``), per key and in total; the
    statistics have a fixed size, so this is the solve time at any horizon (e.g. after 100 epochs).

(4) ResNet-20, the ``quick`` variant of ``configs/cifar_resnet.py`` (28x28x1 input, batch 128, RMSProp): seconds
    per round of a plain ``keras.Model.fit``, of ``nta.training.fit`` without recorders, and with the
    cross-entropy Taylor recorder the config sets up by default (the logits at layer scale; 4 units of the
    stem conv, whose G takes one clamped forward pass per weight because BatchNormalization couples the batch,
    and 4 of the last BatchNormalization), alternating, best of ``--repeats``.
"""

import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import fit_timing  # noqa: E402  (benchmarks/, beside this script)
from nta import data  # noqa: E402
from nta import experiments  # noqa: E402
from nta.hindsight import squared  # noqa: E402
from nta import models  # noqa: E402
from nta import optimizers  # noqa: E402
from nta.hindsight import horizons  # noqa: E402
from nta.report import runs  # noqa: E402
from nta import solvers  # noqa: E402
from nta import taylor  # noqa: E402
from nta import training  # noqa: E402

_DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "mnist")
_DATA_DIR = flags.DEFINE_string("data_dir", _DEFAULT_DATA, "MNIST files; the embedded sample if missing.")
_ROUNDS = flags.DEFINE_integer("rounds", 10, "Timed autoencoder rounds (distinct batches) per measurement in (1).")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Alternating repetitions; the best time is kept.")
_FIT_ROUNDS = flags.DEFINE_integer("fit_rounds", 600, "Timed training rounds per fit in (2).")
_FIT_REPEATS = flags.DEFINE_integer("fit_repeats", 5, "Alternating repetitions of each fit in (2); the best is kept.")
_BASELINE = flags.DEFINE_string("baseline", "", "A checkout of an older nta (e.g. a worktree of the commit before a "
                                "change) whose fit with the Taylor recorder (2) is timed beside this one's.")

_EXAMPLES = 60_000  # one MNIST epoch
_WARMUP = 20  # rounds of each fit left untimed (tracing, first-call costs)
_TOLERANCE = 1e-5  # float32
_SPEEDUP_BUDGET = 100.0
_OVERHEAD_BUDGET = 2.0


def _numpy(tree):
  return tf.nest.map_structure(lambda t: t.numpy(), tree)


def _rel_diff(fast, ref) -> float:
  """max over tensors of max |fast - ref| / max |ref|."""
  worst = 0.0
  for a, b in zip(tf.nest.flatten(fast), tf.nest.flatten(ref)):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)))
  return worst


def _seconds_per_round(fn, batches) -> float:
  start = time.perf_counter()
  for args in batches:
    _numpy(fn(*args))
  return (time.perf_counter() - start) / len(batches)


def _verdict(ok: bool) -> str:
  return "OK" if ok else "MISSED"


# ----------------------------------------------------------------------------------------------------------
# (1) fast vs reference.


def _autoencoder_statistics(spec, x, method):
  state = taylor.snapshot(spec, x)
  e = state.output - x
  last = len(spec.layers) - 1
  out = []
  for l in range(last + 1):
    out.append(taylor.preact_vjp(state, l, e, method))
    out.append(taylor.preact_gram(state, l, method) if l < last else taylor.preact_sq_norms(state, l, method))
  return out


def bench_autoencoder(train) -> None:
  keras.utils.set_random_seed(0)
  spec = models.inspect(models.autoencoder())
  ds = data.train_dataset(train, 64, 0, 1, target="input", input_shape=spec.input_shape)
  batches = [(d["x"],) for d in ds.take(_ROUNDS.value)]
  fns = {m: tf.function(lambda x, m=m: _autoencoder_statistics(spec, x, m)) for m in ("fast", "jacobian")}
  results = {m: _numpy(fn(*batches[0])) for m, fn in fns.items()}  # traces and warms up both
  diff = _rel_diff(results["fast"], results["jacobian"])
  best = {m: np.inf for m in fns}
  for _ in range(_REPEATS.value):
    for m, fn in fns.items():
      best[m] = min(best[m], _seconds_per_round(fn, batches))
  speedup = best["jacobian"] / best["fast"]
  print("(1a) autoencoder, batch 64, all 6 layers: per-sample J_lᵀe and J_lᵀJ_l (hidden) / ‖J_α‖² (output),")
  print("     the per-round statistics of the closed-form squared-loss optimum; both paths in tf.function,")
  print(f"     mean of {len(batches)} real MNIST rounds, best of {_REPEATS.value}")
  print(f"     reference (method='jacobian', batch_jacobian over 784 outputs) {best['jacobian'] * 1e3:9.2f} ms/round")
  print(f"     fast      (method='fast', clamped chain + Gram factorisation)  {best['fast'] * 1e3:9.2f} ms/round")
  g_bytes = 64 * math.prod(spec.output_shape) * sum(taylor.num_inputs(wl) * wl.units for wl in spec.layers) * 4
  print(f"     (A.5's G_l of every layer, jacobian_tensor(method='jacobian'), would hold {g_bytes / 1e9:.1f} GB of "
        "float32 at batch 64: not run)")
  print(f"     speed-up {speedup:.1f}x against this J-only reference; "
        f"max relative difference {diff:.2e} (<= {_TOLERANCE:g}: {_verdict(diff <= _TOLERANCE)})")
  bench_autoencoder_a5(spec, batches[0][0])


def bench_autoencoder_a5(spec, x, chunk=4):
  """A.5 literally: G_l of every layer assembled per output component, then T_l^n(V_l) = f + ⟨G_l, V_l − W_l⟩.

  G of all six layers for 64 samples would hold 16.8 GB, so the reference runs on ``chunk`` samples and its
  time is scaled to the batch (its cost is linear in samples); the fast path runs on the whole batch of 64.
  """
  rng = np.random.default_rng(0)
  vs = [tf.constant(rng.normal(size=(taylor.num_inputs(wl), wl.units)).astype(np.float32) * 0.05)
        for wl in spec.layers]

  def layers(state, method):
    return [taylor.taylor_layer(state, l, v, method) for l, v in enumerate(vs)]

  fast_fn = tf.function(lambda xb: layers(taylor.snapshot(spec, xb), "fast"))
  _numpy(fast_fn(x))
  fast_s = min(_seconds_per_round(fast_fn, [(x,)] * 5) for _ in range(_REPEATS.value))
  start = time.perf_counter()
  ref = _numpy(layers(taylor.snapshot(spec, x[:chunk]), "jacobian"))  # builds and caches every G_l
  ref_s = (time.perf_counter() - start) * (int(x.shape[0]) / chunk)
  diff = _rel_diff(_numpy(fast_fn(x[:chunk])), ref)
  speedup = ref_s / fast_s
  print("(1a') autoencoder, batch 64, all 6 layers: T_l^n(V_l) at a random V_l per layer, as A.5 computes it")
  print(f"     reference (G_l of every layer by GradientTape.jacobian per output component, on {chunk} samples "
        f"scaled to 64) {ref_s:9.2f} s/round")
  print(f"     fast      (clamped JVP per layer, tf.function, 64 samples)  {fast_s * 1e3:9.2f} ms/round")
  print(f"     speed-up {speedup:.0f}x (budget >= {_SPEEDUP_BUDGET:.0f}x: {_verdict(speedup >= _SPEEDUP_BUDGET)}); "
        f"max relative difference {diff:.2e} (<= {_TOLERANCE:g}: {_verdict(diff <= _TOLERANCE)})")


def _conv_loss_and_grad(spec, layer, x, y, v, method):
  state = taylor.snapshot(spec, x, y)
  with tf.GradientTape() as tape:
    tape.watch(v)
    loss = taylor.taylor_loss(state, v, "cross_entropy", layer=layer, method=method)
  return loss, tape.gradient(loss, v)


def bench_convnet(train) -> None:
  layer, batch = 1, 128
  keras.utils.set_random_seed(0)
  spec = models.inspect(models.convnet((28, 28, 1)))
  wl = spec.layers[layer]
  ds = data.train_dataset(train, batch, 0, 1, input_shape=spec.input_shape)
  batches = [(d["x"], d["y"]) for d in ds.take(max(_ROUNDS.value // 2, 2))]
  w = taylor.augment(wl, *spec.weight_values()[layer]).numpy()
  rng = np.random.default_rng(0)
  v = tf.constant(w + w.std() * rng.standard_normal(w.shape).astype(w.dtype))
  fns = {m: tf.function(lambda x, y, m=m: _conv_loss_and_grad(spec, layer, x, y, v, m))
         for m in ("fast", "jacobian")}
  fast = _numpy(fns["fast"](*batches[0]))  # traces and warms up
  best_fast = _seconds_per_round(fns["fast"], batches)
  fns["jacobian"].get_concrete_function(*batches[0])  # trace outside the timing
  start = time.perf_counter()
  ref = _numpy(fns["jacobian"](*batches[0]))
  ref_s = time.perf_counter() - start
  best_fast = min(best_fast, _seconds_per_round(fns["fast"], batches))
  diff = _rel_diff(fast, ref)
  print(f"(1b) convnet 28x28x1, batch {batch}, layer {layer} ({wl.name}, V_l of {taylor.num_inputs(wl)} x "
        f"{wl.units}): cross-entropy layer Taylor loss")
  print("     and its gradient at a random V_l; both paths in tf.function")
  print(f"     reference (method='jacobian', G_l from {batch * 10} per-component backward passes) "
        f"{ref_s:8.2f} s, one round (traced beforehand)")
  print(f"     fast      (method='fast', clamped JVP and its transpose)          {best_fast:8.3f} s/round, "
        f"mean of {len(batches)} rounds, best of 2")
  print(f"     speed-up {ref_s / best_fast:.0f}x; max relative difference {diff:.2e} (loss and gradient, "
        f"<= {_TOLERANCE:g}: {_verdict(diff <= _TOLERANCE)})")


# ----------------------------------------------------------------------------------------------------------
# (2) fit with and without the Taylor recorder; (3) solve.


def _fit(train, rounds, recorders) -> float:
  """Seconds per epoch, extrapolated from ``rounds`` timed rounds (``fit_timing.fit_seconds``)."""
  return fit_timing.fit_seconds(train, rounds, _WARMUP, recorders)


def _baseline_fits(checkout: str, rounds: int) -> list:
  """s/epoch of the fit with the Taylor recorder by the nta of ``checkout``, in a fresh process."""
  env = dict(os.environ, PYTHONPATH=os.path.abspath(checkout))
  script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fit_timing.py")
  proc = subprocess.run([sys.executable, script, _DATA_DIR.value, str(rounds), str(_WARMUP), "1"], env=env,
                        capture_output=True, text=True, cwd=os.path.abspath(checkout))
  if proc.returncode != 0:
    raise SystemExit(f"error: timing the fit with the nta of {checkout} failed: {proc.stderr[-2000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])["taylor"]


def _recorder_flops(recorder, batch: int) -> tuple:
  """FLOPs per round of the recorder's accumulating GEMMs (layer, neuron scale) and of one training step."""
  spec = recorder.spec
  last = len(spec.layers) - 1
  p = {wl.index: wl.kernel_shape[0] + 1 for wl in spec.layers}
  # Only the symmetric input pairs i <= i' are accumulated (the output layer's one shared Gram is full).
  layer = sum(2 * batch * (p[l] * (p[l] + 1) // 2) * spec.layers[l].units ** 2 for l in recorder.layers)
  neuron = sum(2 * batch * (p[l] ** 2 if l == last else len(u) * p[l] * (p[l] + 1) // 2)
               for l, u in recorder.neurons.items())
  train = 6 * batch * sum(taylor.num_inputs(wl) * wl.units for wl in spec.layers)  # forward + backward
  return layer, neuron, train


def bench_fit():
  rounds = _FIT_ROUNDS.value
  num_rounds = _WARMUP + rounds + 1  # the last round solves the quadratics; it is left out of the timing
  train = _load(64 * num_rounds)
  _fit(train, min(rounds, 50), [])  # discarded: the first fit pays one-off costs
  best = {"none": np.inf, "taylor": np.inf}
  recorder = None
  for _ in range(_FIT_REPEATS.value):
    best["none"] = min(best["none"], _fit(train, rounds, []))
    recorder = squared.TaylorRecorder(horizons=[num_rounds])
    best["taylor"] = min(best["taylor"], _fit(train, rounds, [recorder]))
  ratio = best["taylor"] / best["none"]
  print(f"(2) autoencoder fit, batch 64, {rounds} timed rounds after {_WARMUP} warm-up rounds, alternating, "
        f"best of {_FIT_REPEATS.value}; epoch = {_EXAMPLES} examples")
  print("    recorder: " + recorder.describe().replace("\n", "\n    "))
  print(f"    no recorder   {best['none']:7.2f} s/epoch")
  print(f"    TaylorRecorder {best['taylor']:6.2f} s/epoch (statistics only; solves in (3))")
  print(f"    ratio {ratio:.2f} (budget <= {_OVERHEAD_BUDGET:g}: {_verdict(ratio <= _OVERHEAD_BUDGET)})")
  if _BASELINE.value:
    # Both checkouts in fresh processes of the same script, alternating, so neither has the warmer process.
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    fits = {"this checkout": [], _BASELINE.value: []}
    for _ in range(_FIT_REPEATS.value):
      for checkout in fits:
        fits[checkout] += _baseline_fits(here if checkout == "this checkout" else checkout, rounds)
    new, old = min(fits["this checkout"]), min(fits[_BASELINE.value])
    print(f"    with the recorder, each checkout in its own process (best of {_FIT_REPEATS.value}): this checkout "
          f"{new:.2f} s/epoch, {_BASELINE.value} {old:.2f} s/epoch: ratio {new / old:.3f} (not slower than before: "
          f"{_verdict(new / old <= 1.02)}, within 2% timing noise)")
  layer, neuron, train = _recorder_flops(recorder, 64)
  print(f"    arithmetic per round: the statistics' GEMMs take {layer / 1e6:.0f} MFLOP (layer scale, 2·B·p(p+1)/2·u² "
        f"per layer) + {neuron / 1e6:.0f} MFLOP (neuron scale)")
  print(f"    against ~{train / 1e6:.0f} MFLOP for the training step (6·B·params): "
        f"~{1 + (layer + neuron) / train:.1f}x expected at equal arithmetic efficiency")
  return recorder, num_rounds, best["none"]


def bench_solve(recorder, num_rounds, epoch_s) -> None:
  quads = recorder.quadratics()
  print(f"(3) solve of the recorded quadratics after {num_rounds} rounds (eigendecomposition in float64, "
        f"best of {_REPEATS.value}). The statistics have a fixed size ({recorder.bytes / 2**20:.1f} MB) whatever")
  print("    the number of rounds N, so this is also the solve time after 100 epochs (93,800 rounds):")
  total = 0.0
  for key, (a, b, c) in quads.items():
    solvers.solve_quadratic(a, b, c, rcond=recorder.rcond)  # warm-up: traces this shape
    best = np.inf
    for _ in range(_REPEATS.value):
      start = time.perf_counter()
      _numpy(tuple(solvers.solve_quadratic(a, b, c, rcond=recorder.rcond))[:3])
      best = min(best, time.perf_counter() - start)
    total += best
    shape = "x".join(map(str, a.shape))
    print(f"    {key:<10} A {shape:<12} {best * 1e3:8.1f} ms")
  best_solve = np.inf
  for _ in range(_REPEATS.value):
    start = time.perf_counter()
    recorder.solve()
    best_solve = min(best_solve, time.perf_counter() - start)
  per_epoch = -(-_EXAMPLES // 64)
  num_horizons = len(horizons.horizons(100 * per_epoch, per_epoch))
  print(f"    sum over keys {total * 1e3:.1f} ms; TaylorRecorder.solve() (statistics to numpy + all solves) "
        f"{best_solve * 1e3:.1f} ms")
  print(f"    a 100-epoch run solves at {num_horizons} horizons (epoch ends + 20 early rounds): "
        f"{num_horizons * best_solve:.1f} s in all, {num_horizons * best_solve / (100 * epoch_s) * 100:.2f}% of "
        f"its training time without a recorder")


# ----------------------------------------------------------------------------------------------------------
# (4) ResNet-20.


def _resnet_config():
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "cifar_resnet.py")
  spec = importlib.util.spec_from_file_location("nta_config_resnet", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("rmsprop,quick")
  config.record.taylor = True
  return config


def _resnet_round(train, kind, config, rounds, warmup=5):
  """Seconds per round of ResNet-20: ``kind`` "plain" (keras.Model.fit), "nta" or "taylor" (with the
  config's default cross-entropy Taylor recorder)."""
  keras.utils.set_random_seed(0)
  net = models.resnet20(train.x.shape[1:], train.num_classes)
  spec = models.inspect(net)
  batch = config.batch_size
  timer = fit_timing.Timer(warmup, warmup + rounds)
  opt = optimizers.make_optimizer(config.optimizer.name, config.optimizer.learning_rate)
  if kind == "plain":
    ds = data.train_dataset(train, batch, 0, 1, input_shape=spec.input_shape).take(warmup + rounds)
    net.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    net.fit(ds.map(lambda d: (d["x"], d["y"])), epochs=1, steps_per_epoch=warmup + rounds, verbose=0,
            callbacks=[timer], shuffle=False)
    return timer.seconds / rounds, None
  recorders = experiments.build_recorders(config) if kind == "taylor" else []
  with tempfile.TemporaryDirectory() as workdir:
    training.fit(net, lambda e0: data.train_dataset(train, batch, 0, 1, e0, input_shape=spec.input_shape),
                 len(train.y), loss="cross_entropy", optimizer=opt, batch_size=batch, num_epochs=1,
                 recorders=recorders, workdir=workdir if recorders else None, verbose=0, callbacks=[timer])
  return timer.seconds / rounds, (recorders[0] if recorders else None)


def bench_resnet(rounds=10, warmup=5):
  config = _resnet_config()
  train = data.load("sample", train_size=config.batch_size * (warmup + rounds))[0]
  _resnet_round(train, "plain", config, 3, warmup)  # discarded: one-off costs
  best, recorder = {"plain": np.inf, "nta": np.inf, "taylor": np.inf}, None
  for _ in range(_REPEATS.value):
    for kind in best:
      seconds, rec = _resnet_round(train, kind, config, rounds, warmup)
      best[kind] = min(best[kind], seconds)
      recorder = rec or recorder
  print(f"(4) ResNet-20 (configs/cifar_resnet.py:rmsprop,quick; {train.name}, 28x28x1, batch {config.batch_size}), "
        f"{rounds} timed rounds after {warmup}, alternating, best of {_REPEATS.value}")
  print("    recorder: " + recorder.describe().replace("\n", "\n    "))
  print(f"    plain keras fit         {best['plain'] * 1e3:8.1f} ms/round")
  print(f"    nta train_step          {best['nta'] * 1e3:8.1f} ms/round   ratio {best['nta'] / best['plain']:.3f} "
        f"to plain fit (budget <= 1.05: {_verdict(best['nta'] / best['plain'] <= 1.05)})")
  print(f"    with the Taylor records {best['taylor'] * 1e3:8.1f} ms/round   recording costs "
        f"{(best['taylor'] - best['nta']) * 1e3:.1f} ms/round, {best['taylor'] / best['nta']:.2f}x the train step")


def _load(train_size=None):
  if os.path.isdir(_DATA_DIR.value):
    return data.load("files", "mnist", _DATA_DIR.value, train_size=train_size)[0]
  return data.load("sample", train_size=train_size)[0]


def main(argv):
  del argv
  # The autoencoder config's thread pools (one thread per op, two ops at once), for every measurement below.
  configs_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")
  threads = runs.load_config(configs_dir, "autoencoder", "rmsprop").threads
  experiments.apply_threads(threads.intra_op, threads.inter_op)
  train = _load()
  print(f"data: {train.name} ({len(train.y)} examples); threads: intra-op "
        f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, inter-op "
        f"{tf.config.threading.get_inter_op_parallelism_threads() or 'default'} (configs/mnist_autoencoder.py)")
  # The fit timings first, in a process not yet holding the A.5 reference's tens of GB of temporaries.
  recorder, num_rounds, epoch_s = bench_fit()
  bench_solve(recorder, num_rounds, epoch_s)
  bench_autoencoder(train)
  bench_convnet(train)
  bench_resnet()


if __name__ == "__main__":
  app.run(main)
