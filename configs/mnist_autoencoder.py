"""The MNIST autoencoder of §2.3 / A.5: 784-50-30-20-30-50-784 ReLU, MSE, batch 64, 100 epochs.

Variants by config string: ``configs/mnist_autoencoder.py:adam``, ``:sgd0.01``, ``:rmsprop,quick``.
- (none)/paper: the paper's setup on full MNIST through tfds (offline: ``--config.data.source=files
  --config.data.data_dir=../shared/data/mnist``);
- quick: a few minutes on 2 CPU cores on the embedded 6,000-digit sample;
- testing: seconds, for the test suite.
"""

from nta import config as default


def get_config(arg="rmsprop"):
  optimizer, lr, flags = default.parse_variant(arg, default.LEARNING_RATES["autoencoder"])
  c = default.get_config()
  c.model, c.loss, c.batch_size, c.num_epochs = "autoencoder", "mse", 64, 100
  c.data.source, c.data.name = "tfds", "mnist"
  default.set_optimizer(c, optimizer, lr, flags)
  # Every op of this small network (and of its Taylor statistics) is too small to split across cores: running
  # two ops at once, each on one thread, is ~1.5x faster with the Taylor recorder and as fast without
  # (benchmarks/taylor_bench.py).
  c.threads.intra_op, c.threads.inter_op = 1, 2
  if "quick" in flags:
    c.data.source, c.num_epochs = "sample", 20
  if "testing" in flags:
    c.data.source, c.data.train_size, c.num_epochs, c.verbose = "sample", 256, 2, 0
  return c
