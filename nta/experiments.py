"""One experiment of §2.3 / §3.3 from a config: data, model, recorders, training, figures.

:func:`run` is what ``bin/train.py`` calls. It seeds everything once from ``config.seed``, writes the
resolved config to ``<workdir>/config.json`` (refusing to continue a directory that holds another config),
trains with ``nta.training.fit`` (resuming when possible) and draws the run's loss curve (figure 6).
"""

from __future__ import annotations

import os
from typing import Optional

import keras
import tensorflow as tf

from nta import config as config_lib
from nta import data as data_lib
from nta.exploration import recorder as exploration_recorder
from nta.hindsight import records as ce_records
from nta.hindsight import squared
from nta import models
from nta import optimizers
from nta.report import plots
from nta import recorders as recorders_lib
from nta import rundir
from nta import training
from nta.errors import NTAError


def seed_everything(seed: int) -> None:
  """The run's single seed: Python, NumPy and TF RNGs, and deterministic TF kernels."""
  keras.utils.set_random_seed(seed)
  tf.config.experimental.enable_op_determinism()


def apply_threads(intra_op: int, inter_op: int, log=print) -> None:
  """Sets TensorFlow's CPU thread pools (0 = leave TensorFlow's default).

  TensorFlow fixes them when its runtime starts, so a process that has already run TensorFlow ops (a test
  session, a notebook) keeps its pools: the run then goes on with them, saying so once, since threads change
  speed, not results.
  """
  threading = tf.config.threading
  for want, get, put, name in ((intra_op, threading.get_intra_op_parallelism_threads,
                                threading.set_intra_op_parallelism_threads, "intra_op"),
                               (inter_op, threading.get_inter_op_parallelism_threads,
                                threading.set_inter_op_parallelism_threads, "inter_op")):
    if want and get() != want:
      try:
        put(want)
      except RuntimeError:
        log(f"note: TensorFlow is already running in this process; config.threads.{name}={want} not applied "
            f"(keeping {get() or 'the default'})")


def build_model(config, train: data_lib.Split) -> keras.Model:
  """The config's model (the paper's two, or ResNet-20), shaped for the training data."""
  if config.model == "autoencoder":
    return models.autoencoder()
  if config.model in config_lib.MODELS:
    return models.get(config.model, train.x.shape[1:], train.num_classes)
  raise NTAError(f"unknown model '{config.model}' in config.model; choose one of {', '.join(config_lib.MODELS)}")


def build_recorders(config) -> list:
  """The recorders the config asks for (``config.record``); none by default."""
  recorders = []
  if config.record.taylor:
    if config.loss == "mse":
      recorders.append(squared.TaylorRecorder(memory_mb=config.record.memory_mb, record_every=config.record.every))
    else:
      r = config.record
      recorders.append(ce_records.CrossEntropyTaylorRecorder(
          layers=config_lib.layer_list(r.taylor_layers, "record.taylor_layers"),
          neuron_layers=config_lib.layer_list(r.taylor_neuron_layers, "record.taylor_neuron_layers"),
          neurons_per_layer=r.taylor_neurons_per_layer, record_every=r.every,
          neuron_counts=config_lib.layer_counts(r.taylor_neuron_counts, "record.taylor_neuron_counts")))
  if config.record.exploration:
    recorders.append(exploration_recorder.ConfigurationRecorder(every_rounds=config.record.exploration_every_rounds or None))
  if config.record.trace:
    recorders.append(recorders_lib.TraceRecorder())
  return recorders


def load_data(config):
  """(train, test) splits from ``config.data``."""
  return data_lib.load(config.data.source, config.data.name, data_dir=config.data.data_dir or None,
                       train_size=config.data.train_size or None)


def _prepare_workdir(config, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  path = rundir.path(workdir, rundir.CONFIG)
  current = config_lib.to_dict(config)
  training.check_num_epochs(workdir, config.num_epochs)
  started = rundir.last_checkpoint(workdir) or os.path.exists(rundir.path(workdir, rundir.ROUNDS))
  if os.path.exists(path) and started:
    # (A config.json whose run never finished an epoch holds nothing to continue: it is replaced.)
    config_lib.check_resumable(rundir.read_json(path), current, workdir)
  rundir.write_json(path, current)


def run(config, workdir: Optional[str], recorders=None, verbose: Optional[int] = None) -> training.RunResult:
  """Trains the experiment ``config`` in ``workdir`` (resuming an interrupted run) and draws figure 6.

  Args:
    config: a ConfigDict from ``configs/``.
    workdir: the run directory (see ``nta.training`` for its layout); None keeps everything in memory.
    recorders: recorders to use instead of those the config asks for.
    verbose: overrides ``config.verbose``.

  Returns:
    The ``nta.training.RunResult``.
  """
  # Everything about the config is checked before the workdir is written (a refused config leaves no trace).
  config_lib.validate(config)
  apply_threads(config.threads.intra_op, config.threads.inter_op)
  seed_everything(config.seed)
  train, test = load_data(config)
  net = build_model(config, train)
  spec = models.inspect(net)
  for field in ("taylor_layers", "taylor_neuron_layers"):
    for layer in config_lib.layer_list(config.record[field], f"record.{field}") or []:
      spec.layer(layer)
  for layer in config_lib.layer_counts(config.record.taylor_neuron_counts, "record.taylor_neuron_counts"):
    spec.layer(layer)
  if recorders is None:
    recorders = build_recorders(config)
  if workdir:
    _prepare_workdir(config, workdir)
  target = "input" if config.model == "autoencoder" else "labels"
  optimizer = optimizers.make_optimizer(config.optimizer.name, config.optimizer.learning_rate,
                                        config.optimizer.convention)

  def dataset_fn(initial_epoch):
    return data_lib.train_dataset(train, config.batch_size, config.seed, config.num_epochs, initial_epoch,
                                  target=target, input_shape=spec.input_shape)

  test_eval = None
  if config.eval_test:
    x_test = data_lib.eval_arrays(test, input_shape=spec.input_shape)
    y_test = x_test.reshape(len(x_test), -1) if target == "input" else test.y
    test_eval = training.make_test_eval(spec, config.loss, x_test, y_test)
  result = training.fit(
      net, dataset_fn, len(train.y), loss=config.loss, optimizer=optimizer, batch_size=config.batch_size,
      num_epochs=config.num_epochs, seed=config.seed, workdir=workdir, recorders=recorders,
      test_eval=test_eval, checkpoint_every=config.checkpoint_every,
      verbose=config.verbose if verbose is None else verbose, train=train, config=config)
  if workdir:
    label = f"{config.optimizer.name} (lr {config.optimizer.learning_rate:g})"
    plots.training_losses({label: workdir}, rundir.path(workdir, rundir.FIGURE6),
                          title=f"Training loss: {config.model} on {config.data.name} ({config.data.source})")
  return result
