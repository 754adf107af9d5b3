"""Shared fixtures: the real data folder beside the repository, fresh MRML scenes, a small real CT head,
one torch thread per test module, hand-driven Qt timers."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT / "VFMVolumeLab"), str(REPO_ROOT / "SegmentationTools")]  # as Slicer has them

from VFMVolumeLabLib.job_follower import ManualTimers as FakeTimers  # noqa: E402

SHARED_DATA = Path(os.environ.get("VFMLAB_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: real CTs, DICOM series and label maps (see its README)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}; set VFMLAB_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def weights_cache_of_the_session(tmp_path_factory):
    """Tests never write the user's weights cache: ONNX exports (made on a model's first encode) and
    downloads go to one folder per test session; tests that need an empty cache set their own."""
    before = os.environ.get("VFMLAB_WEIGHTS_DIR")
    os.environ["VFMLAB_WEIGHTS_DIR"] = str(tmp_path_factory.mktemp("weights"))
    yield
    if before is None:
        os.environ.pop("VFMLAB_WEIGHTS_DIR", None)
    else:
        os.environ["VFMLAB_WEIGHTS_DIR"] = before


@pytest.fixture
def scene():
    """A fresh headless MRML scene from the slicer-core wheel, set up as the Slicer app would."""
    from vfmlab.mrml import new_scene

    scene = new_scene()
    yield scene
    scene.Clear(1)


@pytest.fixture(scope="module")
def small_head(shared_data, tmp_path_factory) -> Path:
    """The CT head at half resolution (32 x 32 x 47 voxels, HU + 1024): small enough for every model on CPU."""
    import numpy as np

    from vfmlab.volume_io import read_volume, write_volume
    from vfmlab.volume import Volume

    head = read_volume(shared_data / "vtkdata" / "headsq_quarter.nrrd")
    small = Volume(np.ascontiguousarray(head.array[::2, ::2, ::2]), tuple(2 * s for s in head.spacing),
                   head.origin, head.direction, "small_head")
    return write_volume(small, tmp_path_factory.mktemp("volume") / "small_head.nrrd")


@pytest.fixture(scope="module")
def one_torch_thread():
    """The machine's cores are shared with job subprocesses: one thread avoids OpenMP oversubscription stalls."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fake_timers() -> FakeTimers:
    return FakeTimers()


@pytest.fixture(scope="session")
def model_server(tmp_path_factory):
    """A local model server as the panels start it (free port, fresh token), shared by the test session."""
    from vfmlab.client import ServerConnection

    connection = ServerConnection(folder=tmp_path_factory.mktemp("server"), options=("--device", "cpu"),
                                  env={"OMP_NUM_THREADS": "1"})
    yield connection
    connection.stop()


def ready_client(connection, timeout: float = 180.0):
    """The connection's client once its server answers."""
    return connection.wait_client(timeout)


def wait_for(condition, timeout: float = 120.0, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true (True) or ``timeout`` seconds passed (its last value)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
