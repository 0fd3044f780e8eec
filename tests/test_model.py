"""DETR layout (official checkpoint keys and shapes), positional encoding and checkpoints."""

from __future__ import annotations

import argparse

import pytest
import torch
import torchvision

from detr_deploy.model.checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    load_model,
    read_state_dict,
    save_checkpoint,
)
from detr_deploy.model.detr import (
    SinePositionalEncoding,
    count_parameters,
    detr_resnet50,
    detr_resnet50_dc5,
    detr_resnet101,
    detr_small,
)

# Key -> shape, as in the official facebookresearch/detr checkpoints (detr-r50-e632da11.pth).
OFFICIAL_R50_SHAPES = {
    "backbone.0.body.conv1.weight": (64, 3, 7, 7),
    "backbone.0.body.bn1.running_var": (64,),
    "backbone.0.body.layer1.0.conv1.weight": (64, 64, 1, 1),
    "backbone.0.body.layer1.0.downsample.0.weight": (256, 64, 1, 1),
    "backbone.0.body.layer1.0.downsample.1.running_mean": (256,),
    "backbone.0.body.layer3.5.conv2.weight": (256, 256, 3, 3),
    "backbone.0.body.layer4.2.conv3.weight": (2048, 512, 1, 1),
    "input_proj.weight": (256, 2048, 1, 1),
    "input_proj.bias": (256,),
    "transformer.encoder.layers.0.self_attn.in_proj_weight": (768, 256),
    "transformer.encoder.layers.5.self_attn.out_proj.weight": (256, 256),
    "transformer.encoder.layers.5.linear1.weight": (2048, 256),
    "transformer.encoder.layers.5.norm2.bias": (256,),
    "transformer.decoder.layers.0.self_attn.in_proj_bias": (768,),
    "transformer.decoder.layers.0.multihead_attn.in_proj_weight": (768, 256),
    "transformer.decoder.layers.5.linear2.weight": (256, 2048),
    "transformer.decoder.layers.5.norm3.weight": (256,),
    "transformer.decoder.norm.weight": (256,),
    "query_embed.weight": (100, 256),
    "class_embed.weight": (92, 256),
    "class_embed.bias": (92,),
    "bbox_embed.layers.0.weight": (256, 256),
    "bbox_embed.layers.2.weight": (4, 256),
    "bbox_embed.layers.2.bias": (4,),
}


@pytest.fixture(scope="module")
def r50():
    return detr_resnet50(seed=0)


def test_r50_has_official_keys_and_shapes(r50):
    state = r50.state_dict()
    for key, shape in OFFICIAL_R50_SHAPES.items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    # post-norm transformer: no final encoder norm; frozen BN stores no batch counter
    assert "transformer.encoder.norm.weight" not in state
    assert not [k for k in state if k.endswith("num_batches_tracked")]
    assert not [k for k in state if k.startswith("backbone.0.body.fc")]
    assert "backbone.0.body.layer3.5.conv1.weight" in state
    assert "backbone.0.body.layer3.6.conv1.weight" not in state


def test_r50_parameter_count_matches_hand_count(r50):
    # ResNet-50 trunk: torchvision's count minus the classifier; the 53,120 batch-norm
    # weights and biases are buffers in FrozenBatchNorm2d but still stored weights.
    trunk = sum(p.numel() for p in torchvision.models.resnet50().parameters()) - (2048 * 1000 + 1000)
    d, ffn = 256, 2048
    attention = 3 * d * d + 3 * d + d * d + d
    feed_forward = d * ffn + ffn + ffn * d + d
    encoder_layer = attention + feed_forward + 2 * 2 * d
    decoder_layer = 2 * attention + feed_forward + 3 * 2 * d
    heads = (2048 * d + d) + 100 * d + (d * 92 + 92) + 2 * (d * d + d) + (d * 4 + 4)
    expected = trunk + 6 * encoder_layer + 6 * decoder_layer + 2 * d + heads
    assert expected == 41_577_888
    assert count_parameters(r50) == expected


def test_r101_and_dc5_layouts(r50):
    r101 = detr_resnet101(seed=0).state_dict()
    assert tuple(r101["backbone.0.body.layer3.22.conv3.weight"].shape) == (1024, 256, 1, 1)
    assert "backbone.0.body.layer3.23.conv1.weight" not in r101
    r50_state = r50.state_dict()
    assert set(r101) > set(r50_state)
    # DC5 only changes strides and dilations: same keys, same shapes, interchangeable weights
    dc5 = detr_resnet50_dc5(seed=0)
    assert {k: v.shape for k, v in dc5.state_dict().items()} == {k: v.shape for k, v in r50_state.items()}
    # torchvision's dilation: the first layer4 block stops striding, later blocks dilate
    assert dc5.backbone[0].body.layer4[0].conv2.stride == (1, 1)
    assert dc5.backbone[0].body.layer4[1].conv2.dilation == (2, 2)
    assert dc5.backbone[0].stride == 16 and r50.backbone[0].stride == 32


def test_output_shapes_and_box_range():
    model = detr_small(seed=0)
    with torch.no_grad():
        out = model(torch.randn(2, 3, 96, 128))
    assert out["pred_logits"].shape == (2, 25, 7)
    assert out["pred_boxes"].shape == (2, 25, 4)
    assert out["aux_logits"].shape == (2, 2, 25, 7)
    assert float(out["pred_boxes"].min()) >= 0 and float(out["pred_boxes"].max()) <= 1


def test_positional_encoding_ignores_padding():
    encoding = SinePositionalEncoding(64)
    valid = torch.zeros(1, 12, 20, dtype=torch.bool)
    valid[:, :9, :15] = True
    padded = encoding(valid)
    alone = encoding(torch.ones(1, 9, 15, dtype=torch.bool))
    torch.testing.assert_close(padded[:, :, :9, :15], alone, rtol=0, atol=1e-6)
    # the last valid row/column sits at 2*pi (normalised), hand-checked on channel 0 (sin)
    assert torch.isclose(alone[0, 0, -1, 0], torch.sin(torch.tensor(2 * torch.pi * 9 / (9 + 1e-6))), atol=1e-5)


def test_checkpoint_round_trip_official_format(tmp_path):
    source, target = detr_small(seed=1), detr_small(seed=2)
    images = torch.randn(1, 3, 64, 96)
    path = save_checkpoint(source, tmp_path / "ckpt.pth")
    content = torch.load(path, weights_only=True)
    assert set(content) == {"model", "config"}
    load_checkpoint(target, path)
    with torch.no_grad():
        torch.testing.assert_close(target(images)["pred_boxes"], source(images)["pred_boxes"], rtol=0, atol=0)
    rebuilt = load_model(path)
    assert rebuilt.config == source.config


def test_bare_state_dict_and_training_args(tmp_path):
    source = detr_small(seed=3)
    bare = tmp_path / "bare.pth"
    torch.save(source.state_dict(), bare)
    assert read_state_dict(bare)[0].keys() == source.state_dict().keys()
    # official training checkpoints also carry an argparse.Namespace; weights_only must accept it
    with_args = tmp_path / "with_args.pth"
    torch.save({"model": source.state_dict(), "args": argparse.Namespace(lr=1e-4), "epoch": 3}, with_args)
    state, extra = read_state_dict(with_args)
    assert extra["epoch"] == 3 and extra["args"].lr == 1e-4
    load_checkpoint(detr_small(seed=4), with_args)


def test_mismatch_names_missing_unexpected_and_wrong_shape():
    state = detr_small(seed=0).state_dict()
    state.pop("query_embed.weight")
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(detr_small(seed=0, num_classes=3), state)
    message = str(info.value)
    assert "missing keys (1): query_embed.weight" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "wrong shape: class_embed.weight: model [4, 128], checkpoint [7, 128]" in message
    assert info.value.missing == ["query_embed.weight"]


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_checkpoint(detr_small(), tmp_path / "absent.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(detr_small(), corrupt)
    official = tmp_path / "official.pth"
    torch.save({"model": detr_small().state_dict()}, official)
    with pytest.raises(ValueError, match="stores no model config"):
        load_model(official)
