"""MediaPipe's C++ log lines stay off stderr unless asked for (issue 22): a plain
``avatar-cam demo`` prints only our own messages; AVATAR_CAM_VERBOSE=1 (what
set_mediapipe_logging(True) sets) brings MediaPipe's lines back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from avatar_cam import tracking
from avatar_cam.tracking import MediaPipeStart, set_mediapipe_logging

# What mediapipe 0.10.21 prints on every command without the filter (seen on the demo):
# TensorFlow Lite's INFO line, absl's warning about logging before InitializeLog, and
# glog-format I/W/E lines ("W0000 00:00:1796276729.400320    7043 file.cc:114] ...").
MEDIAPIPE_LINE = re.compile(r"^[IWE]\d{4} |^INFO: Created TensorFlow Lite|"
                            r"All log messages before absl::InitializeLog\(\)", re.M)
AVATAR_CAM = Path(sys.executable).with_name("avatar-cam")


@pytest.fixture
def quiet() -> Iterator[None]:
    was = tracking.mediapipe_logging()
    set_mediapipe_logging(False)
    yield
    set_mediapipe_logging(was)


def test_the_filter_drops_mediapipe_lines_and_nothing_else(
        quiet: None, capfd: pytest.CaptureFixture[str]) -> None:
    ours = [b"avatar-cam: generator backend: onnxruntime-cpu fp32\n",
            b"Traceback (most recent call last):\n",
            b"  File \"x.py\", line 1, in <module>\n",
            b"ValueError: INFO: not a TensorFlow Lite line\n",
            b"E0000 00:00:1796276729.400320    7043 calculator_graph.cc:887] an error\n",
            b"Warning: 3 frames without a face\n",
            b"\r 40%|####      | 4/10"]
    theirs = [b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
              b"WARNING: All log messages before absl::InitializeLog() is called are "
              b"written to STDERR\n",
              b"W0000 00:00:1796276729.400320    7043 inference_feedback_manager.cc:114] "
              b"Feedback manager requires a model with a single signature inference.\n",
              b"I0000 00:00:1796276729.4    7041 gl_context.cc:369] GL version: 3.2\n"]
    with MediaPipeStart():
        for mine, other in zip(ours, theirs + [b""] * len(ours), strict=False):
            os.write(2, mine)
            half = len(other) // 2  # a line may come in pieces
            os.write(2, other[:half])
            os.write(2, other[half:])
        print("and from Python", file=sys.__stderr__, flush=True)  # by fd 2, as in a run
    err = capfd.readouterr().err
    assert err == b"".join(ours).decode() + "and from Python\n"  # MediaPipe's E lines too
    # Verbose: nothing is filtered.
    set_mediapipe_logging(True)
    assert os.environ.get(tracking.VERBOSE_ENV) == "1"
    with MediaPipeStart():
        os.write(2, theirs[0])
    assert capfd.readouterr().err == theirs[0].decode()


def _demo(tmp_path: Path, verbose: bool) -> str:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GLOG_", "TF_CPP_", tracking.VERBOSE_ENV))}
    if verbose:
        env[tracking.VERBOSE_ENV] = "1"
    out = tmp_path / f"{'verbose' if verbose else 'quiet'}.mp4"
    run = subprocess.run([str(AVATAR_CAM), "demo", "--frames", "10", "--out", str(out)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    assert out.exists() and "avatar-cam: wrote" in run.stderr  # our own lines still show
    return run.stderr


def test_a_plain_demo_prints_no_mediapipe_log_lines(tmp_path: Path) -> None:
    err = _demo(tmp_path, verbose=False)
    assert not MEDIAPIPE_LINE.search(err), err
    # The switch works: the same command, verbose, shows MediaPipe's own lines.
    err = _demo(tmp_path, verbose=True)
    assert MEDIAPIPE_LINE.search(err), err
