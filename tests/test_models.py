"""Tests for stages.seg.models: shapes, output stride, pretrained loading, param groups."""

import pytest
import torch
import torchvision

from stages.seg.models import (
    ARCHS,
    BACKBONES,
    BUILT_IN_ARCHS,
    build_model,
    default_head_lr_multiplier,
    param_groups,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", BUILT_IN_ARCHS)
@pytest.mark.parametrize("size", [(33, 47), (65, 65)])
def test_output_shape_resnet18(arch, size):
    model = build_model(arch, "resnet18", num_classes=5)
    model.train()
    out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 5, *size)
    assert torch.isfinite(out).all()
    out.mean().backward()  # gradients flow through every head
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 5, *size)


@pytest.mark.parametrize(
    "arch,backbone",
    [("deeplabv3plus", "resnet50"), ("pspnet", "resnet50"), ("deeplabv2", "resnet101"), ("deeplabv3plus", "resnet101")],
)
def test_output_shape_big_backbones(arch, backbone):
    model = build_model(arch, backbone, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 33, 47)).shape == (1, 3, 33, 47)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50"])
@pytest.mark.parametrize("os_, side", [(8, 8), (16, 4)])
def test_output_stride(backbone, os_, side):
    model = build_model("deeplabv3plus", backbone, num_classes=2, output_stride=os_).eval()
    with torch.no_grad():
        feats = model.backbone(torch.randn(1, 3, 64, 64))
    assert feats[0].shape[-2:] == (16, 16)  # layer1: stride 4
    assert feats[-1].shape[-2:] == (side, side)
    assert feats[-1].shape[1] == (512 if backbone == "resnet18" else 2048)


def test_resnet18_dilation_layout():
    trunk = build_model("deeplabv3plus", "resnet18", num_classes=2).backbone
    assert trunk.layer3[0].conv1.dilation == (1, 1) and trunk.layer3[0].conv2.dilation == (2, 2)
    assert trunk.layer3[1].conv1.dilation == (2, 2)
    assert trunk.layer4[0].conv1.dilation == (2, 2) and trunk.layer4[1].conv2.dilation == (4, 4)
    assert trunk.layer4[0].downsample[0].stride == (1, 1)


def test_aspp_rates_follow_output_stride():
    for os_, rates in [(8, (12, 24, 36)), (16, (6, 12, 18))]:
        aspp = build_model("deeplabv3plus", "resnet18", 2, output_stride=os_).head.aspp
        assert tuple(b[0].dilation[0] for b in aspp.branches[1:]) == rates


def test_deeplabv2_head_init():
    head = build_model("deeplabv2", "resnet18", num_classes=21).head
    assert [c.dilation[0] for c in head.branches] == [6, 12, 18, 24]
    w = torch.cat([c.weight.flatten() for c in head.branches])
    assert abs(w.std().item() - 0.01) < 0.001
    assert all((c.bias == 0).all() for c in head.branches)


def _save_resnet18(path, **overrides):
    state = torchvision.models.resnet18(weights=None).state_dict()
    assert any(k.startswith("fc.") for k in state)
    state.update(overrides)
    torch.save(state, path)
    return state


def test_pretrained_roundtrip(tmp_path):
    path = tmp_path / "resnet18.pth"
    saved = _save_resnet18(path)
    model = build_model("deeplabv3plus", "resnet18", num_classes=4, pretrained=str(path))
    trunk = model.backbone.state_dict()
    assert set(trunk) == {k for k in saved if not k.startswith("fc.")}
    for k, v in trunk.items():
        assert torch.equal(v, saved[k]), k


def test_pretrained_missing_file(tmp_path):
    path = tmp_path / "nope" / "resnet50-0676ba61.pth"
    with pytest.raises(FileNotFoundError, match="resnet50-0676ba61.pth") as err:
        build_model("pspnet", "resnet50", num_classes=2, pretrained=str(path))
    assert "pretrained" in str(err.value) and "null" in str(err.value)


def test_pretrained_wrong_shape(tmp_path):
    path = tmp_path / "bad.pth"
    _save_resnet18(path, **{"layer2.0.conv1.weight": torch.zeros(128, 64, 5, 5)})
    with pytest.raises(ValueError, match=r"layer2\.0\.conv1\.weight") as err:
        build_model("deeplabv3plus", "resnet18", num_classes=2, pretrained=str(path))
    assert "bad.pth" in str(err.value) and "resnet18" in str(err.value)


def test_pretrained_wrong_backbone(tmp_path):
    path = tmp_path / "r18.pth"
    _save_resnet18(path)
    with pytest.raises(ValueError, match="missing keys.*layer1.0.conv3.weight"):
        build_model("deeplabv2", "resnet50", num_classes=2, pretrained=str(path))


@pytest.mark.parametrize("arch", BUILT_IN_ARCHS)
def test_param_groups(arch):
    model = build_model(arch, "resnet18", num_classes=3)
    mult = default_head_lr_multiplier(arch)
    assert mult == (1.0 if arch == "deeplabv2" else 10.0)
    groups = param_groups(model, lr=0.001, head_lr_multiplier=10.0)
    assert [g["name"] for g in groups] == ["backbone", "head"]
    assert groups[0]["lr"] == groups[0]["base_lr"] == 0.001
    assert groups[1]["lr"] == pytest.approx(0.01) and groups[1]["base_lr"] == pytest.approx(0.01)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters()}
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.backbone.parameters()}
    torch.optim.SGD(groups, lr=0.001, momentum=0.9, weight_decay=1e-4)  # accepted as is


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(arch="unet", backbone="resnet18"), "deeplabv3plus"),
        (dict(arch="deeplabv3plus", backbone="resnet34"), "resnet101"),
        (dict(arch="deeplabv3plus", backbone="resnet18", output_stride=32), "output_stride"),
    ],
)
def test_bad_choices(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(num_classes=2, **kwargs)
    with pytest.raises(ValueError):
        default_head_lr_multiplier("unet")


def test_constants():
    assert set(ARCHS) == {"deeplabv3plus", "pspnet", "deeplabv2", "custom"}
    assert set(BACKBONES) == {"resnet18", "resnet50", "resnet101", "efficientnet_lite0"}


def test_a_custom_network_from_its_factory_trains_in_one_group_and_is_named_when_it_cannot_be_built(tmp_path):
    from pathlib import Path

    factory = f"{Path(__file__).parent / 'tiny_unet.py'}:build"
    model = build_model("custom", None, num_classes=3, factory=factory, kwargs='{"width": 4}')
    assert model(torch.zeros(2, 3, 10, 12)).shape == (2, 3, 10, 12)
    groups = param_groups(model, lr=0.01, head_lr_multiplier=10.0)
    assert len(groups[0]["params"]) == len(list(model.parameters())) and groups[1]["params"] == []
    for bad, match in [
        (None, "needs model.factory"),
        ("tiny_unet", "write package.module:function"),
        (f"{tmp_path / 'nope.py'}:build", "cannot be imported"),
        (factory.replace(":build", ":nothing"), "has no function 'nothing'"),
    ]:
        with pytest.raises(ValueError, match=match):
            build_model("custom", None, num_classes=3, factory=bad)
