"""ResNet-20 (He et al. 2016) on CIFAR-10: a modern network for nta's analyses beside the paper's two.

Cross-entropy, batch 128, 100 epochs, with the paper's optimizer settings for its convnet (A.5: RMSProp 5e-4,
Adam 2e-4; SGD at 1.0, 0.1, 0.01; TensorFlow 1 conventions unless the variant says ``keras3``). Variants by
config string as in ``cifar_convnet``:
- (none)/paper: CIFAR-10 through tfds (offline: ``--config.data.source=files --config.data.name=cifar10
  --config.data.data_dir=DIR`` with ``DIR/cifar-10-batches-py``);
- quick: MNIST-shaped input from the embedded sample, minutes on a CPU;
- testing: seconds, for the test suite.
"""

from nta import config as default


def get_config(arg="rmsprop"):
  optimizer, lr, flags = default.parse_variant(arg, default.LEARNING_RATES["convnet"])
  c = default.get_config()
  c.model, c.loss, c.batch_size, c.num_epochs = "resnet20", "cross_entropy", 128, 100
  c.data.source, c.data.name = "tfds", "cifar10"
  default.set_optimizer(c, optimizer, lr, flags)
  if "quick" in flags:
    c.data.source, c.data.name, c.data.train_size, c.num_epochs = "sample", "mnist", 2048, 3
  if "testing" in flags:
    c.data.source, c.data.name, c.data.train_size, c.num_epochs, c.verbose = "sample", "mnist", 128, 2, 0
  return c
