"""Tests for nta.cli: TensorFlow's start-up logging is captured, and written out when the import fails."""

import os
import subprocess
import sys

import pytest

from nta import cli
from nta.errors import NTAError

from helpers import ROOT

# A stand-in for TensorFlow that writes to file descriptor 2 directly, as TensorFlow's C++ loader does.
_FAKE_TF = '''
import os
os.write(2, b"I0000 loader chatter\\n")
if os.environ.get("FAKE_TF_FAILS"):
  raise ImportError("fake tensorflow failed to load")
__version__ = "0.fake"
class config:
  @staticmethod
  def list_physical_devices(kind):
    os.write(2, b"E0000 failed call to cuInit\\n")
    return []
'''


def _run_with_fake_tf(tmp_path, **env):
  (tmp_path / "tensorflow.py").write_text(_FAKE_TF)
  environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  environ.update(PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}", **env)
  return subprocess.run([sys.executable, "-c", "from nta import cli; print(cli.DEVICES)"], cwd=tmp_path,
                        env=environ, capture_output=True, text=True, timeout=120)


def test_start_up_logging_is_captured(tmp_path):
  proc = _run_with_fake_tf(tmp_path)
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.strip() == "TensorFlow 0.fake on CPU (no GPU visible)"
  assert proc.stderr == ""


def test_failed_import_writes_out_what_was_captured(tmp_path):
  proc = _run_with_fake_tf(tmp_path, FAKE_TF_FAILS="1")
  assert proc.returncode != 0
  assert "I0000 loader chatter" in proc.stderr and "fake tensorflow failed to load" in proc.stderr


def test_a_user_log_level_leaves_tensorflow_logging_alone(tmp_path):
  proc = _run_with_fake_tf(tmp_path, TF_CPP_MIN_LOG_LEVEL="0")
  assert proc.returncode == 0
  assert "I0000 loader chatter" in proc.stderr and "cuInit" in proc.stderr


def test_errors_to_exit_is_one_line_and_status_1(capsys):
  with pytest.raises(SystemExit) as exit_info:
    with cli.errors_to_exit():
      raise NTAError("bad input")
  assert exit_info.value.code == 1
  assert capsys.readouterr().err == "error: bad input\n"


def test_ctrl_c_ends_the_progress_line_then_says_how_to_resume(capsys):
  with pytest.raises(SystemExit) as exit_info:
    with cli.errors_to_exit():
      print("  3/16 [=====>....] - loss: 0.1", end="")  # a progress bar's unfinished line
      raise KeyboardInterrupt
  out = capsys.readouterr()
  assert exit_info.value.code == 130
  assert out.out.endswith("\n")
  assert out.err == "interrupted: rerun the same command to resume from the last checkpoint\n"


def test_parse_runs_labels_and_checks_directories(tmp_path):
  (tmp_path / "a").mkdir()
  assert cli.parse_runs([f"x={tmp_path / 'a'}", str(tmp_path / "a")]) == [("x", str(tmp_path / "a")),
                                                                          (None, str(tmp_path / "a"))]
  with pytest.raises(NTAError, match="does not exist"):
    cli.parse_runs([str(tmp_path / "missing")])
