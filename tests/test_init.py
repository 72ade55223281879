"""nta/__init__.py: the curated public API resolves, lazily (``import nta`` does not start TensorFlow)."""

import subprocess
import sys

import pytest

import nta
from nta.exploration import measures as exploration_measures
from nta.exploration import recorder as exploration_recorder
from nta.hindsight import squared
from nta import models
from nta import taylor
from nta import training

from helpers import ROOT


def test_import_nta_does_not_import_tensorflow():
  code = "import sys, nta; assert 'tensorflow' not in sys.modules, 'tensorflow imported'; print(len(nta.__all__))"
  proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr
  assert int(proc.stdout) == len(nta.__all__)


def test_the_curated_api_is_the_modules_own_objects():
  assert nta.inspect is models.inspect and nta.fit is training.fit and nta.resnet20 is models.resnet20
  assert nta.TaylorRecorder is squared.TaylorRecorder and nta.ConfigurationRecorder is exploration_recorder.ConfigurationRecorder
  assert nta.taylor_loss is taylor.taylor_loss and nta.min_hamming is exploration_measures.min_hamming
  for name in nta.__all__:
    assert getattr(nta, name) is not None, name
  with pytest.raises(AttributeError, match="no attribute 'nothing'"):
    nta.nothing  # noqa: B018


def test_the_readme_own_model_example_runs_and_writes_what_it_says(tmp_path, capsys):
  text = (ROOT / "README.md").read_text()
  section = text[text.index("## Your own model"):]
  code = section[section.index("```python") + len("```python"):section.index("```\n", section.index("```python") + 9)]
  workdir = tmp_path / "mine"
  exec(compile(code.replace("runs/mine", str(workdir)), "README.md", "exec"), {})  # pylint: disable=exec-used
  for name in ("records/taylor/meta.json", "records/taylor/index.json", "records/taylor/optima.npz",
               "records/exploration/meta.json", "records/exploration/units.npz",
               "records/exploration/data_indices.npz", "regret.npz", "regret.json", "exploration.npz"):
    assert (workdir / name).is_file(), name
  assert sorted(p.name for p in (workdir / "records" / "exploration").glob("configs_*.npz")) == [
      f"configs_{8 * e:09d}.npz" for e in (1, 2, 3)]
  assert "taylor: cross-entropy Taylor records every 2 round(s)" in capsys.readouterr().out
