"""Timing helpers shared by the benchmark scripts."""

import time

import keras


class Timer(keras.callbacks.Callback):
  """Wall time from the end of round ``warmup`` to the end of training (the first rounds include tracing; the
  end includes what a fit does after its last round, e.g. a recorder's last writes)."""

  def __init__(self, warmup):
    super().__init__()
    self.warmup, self.count, self.start = warmup, 0, None

  def on_train_batch_end(self, batch, logs=None):
    self.count += 1
    if self.count == self.warmup:
      self.start = time.perf_counter()

  def on_train_end(self, logs=None):
    self.seconds = time.perf_counter() - self.start
