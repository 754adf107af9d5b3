"""The one device resolver every pillar uses."""
from __future__ import annotations

import pytest
import torch

from vfmlab.devices import resolve_device
from vfmlab.errors import InputError


def test_auto_takes_a_gpu_only_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device(None) == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1") and resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == torch.device("cpu")
    with pytest.raises(InputError, match="torch sees no GPU here; use auto or cpu"):
        resolve_device("cuda")


def test_an_unknown_device_name_says_what_to_use():
    with pytest.raises(InputError, match="unknown device 'gpu0'.*use auto, cpu, cuda or cuda:N"):
        resolve_device("gpu0")
