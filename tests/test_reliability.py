"""Issue 17: messages that name the real cause (no model training here)."""

import pytest
import torch

from amser_sb.lobes import SSLBackbone


def test_fewer_hidden_layers_names_layerdrop(tiny_w2v2_layer, tmp_path):
    """Row 14: fine-tuning with layer weights, an encoder that skipped
    layers; the message names LayerDrop, not only the feature cache."""
    ssl = SSLBackbone(tiny_w2v2_layer, save_path=str(tmp_path),
                      layer_weights=True)
    hidden = torch.zeros(1, ssl.n_layers - 1, 5, 32)
    with pytest.raises(ValueError) as info:
        ssl.combine(hidden)
    message = str(info.value)
    # our encoders never skip a layer when layer weights combine them
    # (tests/test_finetune.py); the message names the cause for others
    assert "LayerDrop" in message and "feature cache" not in message
    assert f"{ssl.n_layers - 1} hidden states" in message


def test_too_short_audio_message_speaks_to_users(tiny_w2v2_layer, tmp_path):
    ssl = SSLBackbone(tiny_w2v2_layer, save_path=str(tmp_path))
    with pytest.raises(ValueError) as info:
        ssl(torch.zeros(1, 100))
    assert "too short" in str(info.value)
    assert "pipeline" not in str(info.value)


@pytest.mark.parametrize("device, needle", [
    ("cuda:0", "no usable CUDA GPU"),
    ("cuda", "no usable CUDA GPU"),
    ("gpu", "is not a torch device"),
])
def test_device_problems(device, needle, monkeypatch):
    from amser_sb.config.device_check import DeviceError, check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=needle):
        check_device({"device": device})
    check_device({"device": "cpu"})


def test_cuda_index_beyond_the_gpus(monkeypatch):
    from amser_sb.config.device_check import device_problem

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert "cuda:0 to cuda:1" in device_problem("cuda:3")
    assert device_problem("cuda:1") is None
