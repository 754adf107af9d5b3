"""The modules' Slicer self-tests (what ``Slicer --test`` runs), here on real MRML against a real local model
server: every section's logic end to end through the client on the bundled sample CT."""
from __future__ import annotations

import pytest

from vfmlab import mrml

from conftest import ready_client

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def client(model_server):
    return ready_client(model_server)


def test_probe_one_capture(client, tmp_path):
    from VFMVolumeLabLib import self_tests

    measured = self_tests.probe_one_capture(mrml.new_scene(), client, tmp_path)
    assert measured["heads"] > 1


def test_deepdvr_two_epochs(client, tmp_path):
    from VFMVolumeLabLib import self_tests

    measured = self_tests.deepdvr_two_epochs(mrml.new_scene(), client, tmp_path)
    assert 0.0 < measured["best_val_ssim"] <= 1.0


def test_segment_and_propagate(client):
    from SegmentationToolsLib import self_tests

    measured = self_tests.segment_and_propagate(mrml.new_scene(), client)
    print(f"self-test: right kidney propagated from one box, Dice {measured['dice']:.3f}; "
          f"from two seeds {measured['seeded_dice']:.3f}")


def test_btvae_predict(client, tmp_path):
    from SegmentationToolsLib import self_tests

    measured = self_tests.btvae_predict(mrml.new_scene(), client, tmp_path)
    print(f"self-test: small BT-VAE on the liver, Dice {measured['dice']:.3f}")


def test_a_failed_check_says_what_was_expected():
    from VFMVolumeLabLib.self_tests import check

    check(True, "never shown")
    with pytest.raises(AssertionError, match="Dice 0.1"):
        check(False, "Dice 0.1 (expected > 0.7)")
