"""Run configuration: defaults shared by every experiment, variant parsing and validation.

The experiment configs in ``configs/`` import :func:`get_config` and adjust it (configs are code).

Every field can be overridden on the command line, e.g. ``--config.num_epochs=5``. Empty strings and zeros
mean "unset" (so that the command line can override them with a typed value).
"""

from __future__ import annotations

import inspect
import json
import os
import re

import ml_collections

from nta import data as data_lib
from nta import losses
from nta import optimizers
from nta.errors import NTAError


def get_config():
  """The default ConfigDict; see the comments for each field."""
  c = ml_collections.ConfigDict()
  c.seed = 0  # drives weight init, data order, recorder subsets: same seed -> same numbers on CPU
  c.model = "autoencoder"  # "autoencoder", "convnet" or "resnet20" (nta.models)
  c.loss = "mse"  # "mse" or "cross_entropy" (nta.losses)
  c.data = ml_collections.ConfigDict()
  c.data.source = "sample"  # "tfds", "files" or "sample" (nta.data)
  c.data.name = "mnist"  # tfds name, or the file format for source=files (mnist, fashion_mnist, cifar10)
  c.data.data_dir = ""  # tfds data_dir / folder of original files; "" = tfds default
  c.data.train_size = 0  # 0 = the whole training split
  c.batch_size = 64  # minibatch size: samples per round
  c.num_epochs = 100  # epochs to train (a finished run is extended by a larger value)
  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "rmsprop"  # "sgd", "rmsprop", "adam" or "adagrad" (nta.optimizers)
  c.optimizer.learning_rate = 1e-3  # step size (the variants set the paper's, A.5)
  # "tf1": TensorFlow 1's optimizer defaults, as the paper ran them (RMSProp accumulator from ones, eps 1e-10;
  # Adam eps 1e-8); "keras3": Keras 3's defaults. The table is in nta.optimizers.
  c.optimizer.convention = optimizers.DEFAULT_CONVENTION
  c.checkpoint_every = 1  # epochs between checkpoints
  c.eval_test = True  # test loss (and accuracy) at each epoch end
  c.verbose = 1  # 0 silent, 1 progress bar, 2 one line per epoch
  c.record = ml_collections.ConfigDict()
  c.record.every = 1  # record Taylor statistics every k-th round
  c.record.taylor = False  # hindsight Taylor optima: statistics (mse, nta.hindsight.squared) or records (cross-entropy)
  c.record.memory_mb = 16.0  # budget for exact Taylor statistics; larger layers are skipped (printed)
  c.record.trace = False  # per-round weights, batch and loss on disk (small runs only)
  # Cross-entropy runs only (nta.hindsight.records): what is recorded (the solve after training is set by
  # nta.analysis.curves.solve_if_needed / bin/regret.py). Layer lists are "auto",
  # "none" or comma-separated 0-based weight-layer indices such as "0,4".
  c.record.taylor_layers = "auto"  # layer scale; auto = every layer whose records fit the disk budget
  c.record.taylor_neuron_layers = "auto"  # neuron scale; auto = every layer (seeded filters of conv layers)
  c.record.taylor_neurons_per_layer = 50  # conv filters per layer at neuron scale (the paper's 50)
  # Per-layer exceptions to taylor_neurons_per_layer, "layer:count,..." such as "1:5,2:5" ("": none): the
  # 1,601-weight filters of the convnet's conv2 and conv3 cost minutes each to solve on a CPU, conv1's seconds.
  c.record.taylor_neuron_counts = ""
  c.record.exploration = False  # activation configurations (nta.exploration)
  c.record.exploration_every_rounds = 0  # 0 = at every epoch end
  # TensorFlow CPU thread pools (0 = TensorFlow's default). Set once per process, before TensorFlow starts
  # (nta.experiments.apply_threads); they change speed only, so a run may be resumed with other values.
  c.threads = ml_collections.ConfigDict()
  c.threads.intra_op = 0  # threads splitting one op
  c.threads.inter_op = 0  # ops run at once
  return c


MODELS = ("autoencoder", "convnet", "resnet20")  # what nta.experiments.build_model builds

# Paper learning rates (A.5); SGD is swept over 1.0, 0.1 and 0.01 (fig. 5, "sgd" alone is 0.1); AdaGrad is not
# in the paper. ResNet-20 (configs/cifar_resnet.py) takes the convnet's.
LEARNING_RATES = {
    "autoencoder": {"rmsprop": 1e-3, "adam": 1e-2, "sgd": 0.1, "adagrad": 1e-2},
    "convnet": {"rmsprop": 5e-4, "adam": 2e-4, "sgd": 0.1, "adagrad": 1e-2},
}


def parse_variant(arg, learning_rates, default_optimizer="rmsprop"):
  """Splits a config string like "adam", "sgd0.01,quick" or "rmsprop,keras3" into (optimizer, learning rate,
  flags); flags hold the scale (quick, testing, paper) and an optimizer convention (tf1, keras3)."""
  tokens = [t for t in (arg or "").split(",") if t]
  optimizer, lr, flags = default_optimizer, None, set()
  for token in tokens:
    if token.startswith("sgd") and token != "sgd":
      try:
        optimizer, lr = "sgd", float(token[3:])
      except ValueError:
        optimizer, lr = None, None
    elif token in learning_rates:
      optimizer = token
    elif token in ("quick", "testing", "paper") + optimizers.CONVENTIONS:
      flags.add(token)
    else:
      optimizer = None
    if optimizer is None:
      raise NTAError(f"unknown config variant '{token}'; use an optimizer ({', '.join(learning_rates)}, "
                     "sgd1.0, sgd0.1, sgd0.01), optionally quick, testing or paper, and optionally an optimizer "
                     f"convention ({', '.join(optimizers.CONVENTIONS)}), comma-separated")
  if len(flags & set(optimizers.CONVENTIONS)) > 1:
    raise NTAError(f"config variant '{arg}' names two optimizer conventions; choose one")
  return optimizer, lr if lr is not None else learning_rates[optimizer], flags


def set_optimizer(c, optimizer: str, learning_rate: float, flags) -> None:
  """Sets ``c.optimizer`` from a parsed variant (its convention flag, else the default tf1)."""
  c.optimizer.name, c.optimizer.learning_rate = optimizer, learning_rate
  c.optimizer.convention = next((f for f in optimizers.CONVENTIONS if f in flags), optimizers.DEFAULT_CONVENTION)


def layer_list(value, field: str):
  """A layer-list field: None for "auto", [] for "none" (or empty), else the sorted distinct indices."""
  text = str(value).strip().lower()
  if text == "auto":
    return None
  if text in ("", "none"):
    return []
  try:
    return sorted({int(t) for t in text.split(",") if t.strip()})
  except ValueError:
    raise NTAError(f"config.{field} must be 'auto', 'none' or comma-separated layer indices such as '0,4', "
                   f"got {value!r}") from None


def layer_counts(value, field: str) -> dict:
  """A "layer:count,..." field as {layer: count} ("" or "none": {}); counts >= 1, each layer once."""
  text = str(value).strip().lower()
  if text in ("", "none"):
    return {}
  out = {}
  try:
    for item in text.split(","):
      layer, count = item.split(":")
      layer, count = int(layer), int(count)
      if layer in out or count < 1:
        raise ValueError
      out[layer] = count
  except ValueError:
    raise NTAError(f"config.{field} must be comma-separated layer:count pairs with counts >= 1, each layer once, "
                   f"such as '1:5,2:5', got {value!r}") from None
  return out


def field_help() -> dict:
  """{dotted field: its meaning}, read from the comments of :func:`get_config`, where every field is defined:
  a field's own trailing comment, else the comment lines just above it (so the help cannot drift from the
  code; a test checks that every field has one)."""
  meanings, above = {}, []
  for line in inspect.getsource(get_config).splitlines():
    text = line.strip()
    if text.startswith("#"):
      above.append(text.lstrip("# "))
      continue
    match = re.match(r"c\.([\w.]+) = (.*)$", text)
    if match and not match.group(2).startswith("ml_collections.ConfigDict()"):
      comment = match.group(2).partition("  # ")[2]
      meanings[match.group(1)] = comment or " ".join(above)
    if not (match and match.group(2).startswith("ml_collections.ConfigDict()")):
      above = []
  return meanings


def describe(config, source: str = "") -> str:
  """The ``--config_help`` text: the variant grammar and every field with its value in ``config`` and its
  meaning (:func:`field_help`); ``source`` is the config file's docstring (its variants)."""
  flat = {}

  def walk(prefix, node):
    for key in sorted(node.keys()):
      value = node[key]
      if isinstance(value, ml_collections.ConfigDict):
        walk(f"{prefix}{key}.", value)
      else:
        flat[prefix + key] = value

  walk("", config)
  meanings = field_help()
  lines = ["Variants: --config=FILE:VARIANT, comma-separated tokens: an optimizer (rmsprop, adam, sgd, adagrad, "
           "or sgd<learning rate> such as sgd0.01; each otherwise with the paper's learning rate), optionally a "
           f"scale (quick, testing, paper) and an optimizer convention ({', '.join(optimizers.CONVENTIONS)}; "
           f"default {optimizers.DEFAULT_CONVENTION})."]
  if source:
    lines += ["", source.strip()]
  lines += ["", "Fields: --config.FIELD=VALUE (values of this variant):"]
  width = max(len(f"{k} = {v!r}") for k, v in flat.items())
  for key, value in flat.items():
    lines.append(f"  {f'{key} = {value!r}':<{width}}  {meanings.get(key, '(set by this config file)')}")
  return "\n".join(lines)


def to_dict(config) -> dict:
  """Plain-dict copy of a ConfigDict (what goes to ``config.json``)."""
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else dict(config)


def validate(config) -> None:
  """Raises NTAError (one line naming the field) for values no run can use."""
  checks = [
      (config.batch_size > 0, f"config.batch_size must be positive, got {config.batch_size}"),
      (config.num_epochs > 0, f"config.num_epochs must be positive, got {config.num_epochs}"),
      (config.optimizer.learning_rate > 0,
       f"config.optimizer.learning_rate must be positive, got {config.optimizer.learning_rate}"),
      (config.data.train_size >= 0, f"config.data.train_size must be >= 0, got {config.data.train_size}"),
      (config.checkpoint_every > 0, f"config.checkpoint_every must be positive, got {config.checkpoint_every}"),
      (config.threads.intra_op >= 0, f"config.threads.intra_op must be >= 0, got {config.threads.intra_op}"),
      (config.threads.inter_op >= 0, f"config.threads.inter_op must be >= 0, got {config.threads.inter_op}"),
  ]
  optimizers.check(config.optimizer.name, config.optimizer.convention)
  record = config.record
  for field in ("taylor_layers", "taylor_neuron_layers"):
    layer_list(record[field], f"record.{field}")
  layer_counts(record.taylor_neuron_counts, "record.taylor_neuron_counts")
  checks += [
      (record.taylor_neurons_per_layer >= 1,
       f"config.record.taylor_neurons_per_layer must be >= 1, got {record.taylor_neurons_per_layer}"),
      (record.every >= 1, f"config.record.every must be >= 1 (record every k-th round), got {record.every}"),
      (record.memory_mb > 0, f"config.record.memory_mb must be positive, got {record.memory_mb}"),
      (record.exploration_every_rounds >= 0,
       f"config.record.exploration_every_rounds must be >= 0 (0: every epoch), got {record.exploration_every_rounds}"),
      (0 <= config.seed < 2**32, f"config.seed must be in 0..{2**32 - 1}, got {config.seed}"),
      (config.model in MODELS, f"config.model must be one of {', '.join(MODELS)}, got {config.model!r}"),
      (config.loss in losses.LOSSES, f"config.loss must be one of {', '.join(losses.LOSSES)}, got {config.loss!r}"),
      (config.data.source in data_lib.SOURCES,
       f"config.data.source must be one of {', '.join(data_lib.SOURCES)}, got {config.data.source!r}"),
  ]
  if record.taylor and config.loss == "mse":
    changed = [f for f in ("taylor_layers", "taylor_neuron_layers", "taylor_neurons_per_layer",
                           "taylor_neuron_counts")
               if record[f] != get_config().record[f]]
    checks.append((not changed, f"config.record.{changed[0] if changed else ''} applies to cross-entropy runs; the "
                                "squared-loss recorder records every layer and neuron whose statistics fit "
                                "config.record.memory_mb"))
  for ok, message in checks:
    if not ok:
      raise NTAError(message)


def check_resumable(saved: dict, current: dict, workdir: str,
                    fix: str = "choose another --workdir or remove the old run") -> None:
  """A run directory may only be continued with the same config (num_epochs may grow, threads may change);
  ``fix`` ends the error message."""
  ignore = {"num_epochs", "verbose", "threads"}

  def differs(a, b):
    # Fields present on only one side are new defaults of a later nta, not a different experiment.
    if isinstance(a, dict) and isinstance(b, dict):
      return any(differs(a[k], b[k]) for k in set(a) & set(b))
    return a != b

  def same_experiment(cfg):
    cfg = dict(cfg)
    data, record = cfg.get("data"), cfg.get("record")
    if isinstance(data, dict) and data.get("data_dir"):
      # The same data folder named two ways (relative, absolute) is the same data.
      cfg["data"] = {**data, "data_dir": os.path.realpath(data["data_dir"])}
    optimizer = cfg.get("optimizer")
    if isinstance(optimizer, dict) and "convention" not in optimizer:
      # Runs from before conventions were recorded trained with Keras 3's optimizer defaults.
      cfg["optimizer"] = {**optimizer, "convention": "keras3"}
    if isinstance(record, dict) and record.get("taylor_neuron_layers") == "none":
      # Neurons per layer of no layer select nothing.
      cfg["record"] = {k: v for k, v in record.items()
                       if k not in ("taylor_neurons_per_layer", "taylor_neuron_counts")}
    return cfg

  saved, current = same_experiment(saved), same_experiment(current)
  diff = sorted(k for k in set(saved) & set(current) if k not in ignore and differs(saved[k], current[k]))
  if diff:
    raise NTAError(f"{workdir} holds a run with a different config (fields: {', '.join(diff)}); {fix}")
