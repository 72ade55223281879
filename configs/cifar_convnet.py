"""The CIFAR-10 convnet of §2.3 / A.5: 3 x (conv 64 5x5 + ReLU + max-pool 2x2), dense 192, dense 10.

Cross-entropy, batch 128, 100 epochs. Variants by config string as in ``mnist_autoencoder``:
- (none)/paper: CIFAR-10 through tfds (offline: ``--config.data.source=files --config.data.name=cifar10
  --config.data.data_dir=DIR`` with ``DIR/cifar-10-batches-py``);
- quick: MNIST-shaped input from the embedded sample (the paper reports the convnet behaves alike on MNIST);
- testing: seconds, for the test suite.
"""

from nta import config as default


def get_config(arg="rmsprop"):
  optimizer, lr, flags = default.parse_variant(arg, default.LEARNING_RATES["convnet"])
  c = default.get_config()
  c.model, c.loss, c.batch_size, c.num_epochs = "convnet", "cross_entropy", 128, 100
  c.data.source, c.data.name = "tfds", "cifar10"
  default.set_optimizer(c, optimizer, lr, flags)
  if "quick" in flags:
    c.data.source, c.data.name, c.num_epochs = "sample", "mnist", 5
  if "testing" in flags:
    c.data.source, c.data.name, c.data.train_size, c.num_epochs, c.verbose = "sample", "mnist", 128, 2, 0
  return c
