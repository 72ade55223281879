"""ResNet-20 (He et al. 2016) on CIFAR-10: a modern network for nta's analyses beside the paper's two.

Cross-entropy, batch 128, 100 epochs, with the paper's optimizer settings for its convnet (A.5: RMSProp 5e-4,
Adam 2e-4; SGD at 1.0, 0.1, 0.01; TensorFlow 1 conventions unless the variant says ``keras3``). Variants by
config string as in ``cifar_convnet``:
- (none)/paper: CIFAR-10 through tfds (offline: ``--config.data.source=files --config.data.name=cifar10
  --config.data.data_dir=DIR`` with ``DIR/cifar-10-batches-py``);
- quick: MNIST-shaped input from the embedded sample, minutes on a CPU;
- testing: seconds, for the test suite.

Cross-entropy Taylor recording (``--config.record.taylor=True``) defaults to what a CPU affords per round: the
logits layer at layer scale, and 4 seeded units of the stem conv and of the last BatchNormalization at neuron
scale. Every conv and BatchNormalization but the last is followed by a BatchNormalization, which couples the
samples of a batch in training mode: their G comes from one clamped forward pass per weight (the record plan
printed before training says so and what it costs); name other layers in ``record.taylor_neuron_layers``.
"""

from nta import config as default


def get_config(arg="rmsprop"):
  optimizer, lr, flags = default.parse_variant(arg, default.LEARNING_RATES["convnet"])
  c = default.get_config()
  c.model, c.loss, c.batch_size, c.num_epochs = "resnet20", "cross_entropy", 128, 100
  c.data.source, c.data.name = "tfds", "cifar10"
  default.set_optimizer(c, optimizer, lr, flags)
  c.record.taylor_layers, c.record.taylor_neuron_layers, c.record.taylor_neurons_per_layer = "-1", "0,-2", 4
  if "quick" in flags:
    c.data.source, c.data.name, c.data.train_size, c.num_epochs = "sample", "mnist", 2048, 3
  if "testing" in flags:
    c.data.source, c.data.name, c.data.train_size, c.num_epochs, c.verbose = "sample", "mnist", 128, 2, 0
  return c
