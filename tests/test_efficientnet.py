"""EfficientNet-Lite0 trunk: the packaged ImageNet weights, mapped strictly, give ImageNet's answers.

The reference forward pass below is written from the file's tensors with plain torch functional
calls (TF "same" padding, BN eps 1e-3, ReLU6, (x - 127) / 128 input), independently of the
trunk's modules, so a wrong mapping, padding, stride or input conversion shows as a logit gap.
"""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stages.seg.data import read_image
from stages.seg.efficientnet import LITE0_STAGES, EfficientNetLite0Trunk, packaged_weights
from stages.seg.models import build_model, load_pretrained
from stages.seg.transforms import normalize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def state():
    return torch.load(packaged_weights(), map_location="cpu", weights_only=True)


def _same_conv(x, w, stride=1, groups=1):
    k = w.shape[-1]
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / stride) - 1) * stride + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), w, stride=stride, groups=groups)


def _bn(x, state, prefix):
    return F.batch_norm(
        x,
        state[f"{prefix}.running_mean"],
        state[f"{prefix}.running_var"],
        state[f"{prefix}.weight"],
        state[f"{prefix}.bias"],
        training=False,
        eps=1e-3,
    )


def _classify(features, state):
    """The ImageNet classifier on 320-channel block-15 features: conv_head, bn1, ReLU6, pool, fc."""
    x = F.relu6(_bn(F.conv2d(features, state["_conv_head.weight"]), state, "_bn1"))
    return F.linear(x.mean((2, 3)), state["_fc.weight"], state["_fc.bias"])


def _reference_logits(pixels, state):
    """ImageNet logits of uint8-range images (N, 3, H, W), straight from the state dict."""
    x = (pixels - 127) / 128
    x = F.relu6(_bn(_same_conv(x, state["_conv_stem.weight"], 2), state, "_bn0"))
    strides = [s if i == 0 else 1 for _, _, s, _, n in LITE0_STAGES for i in range(n)]
    for b, stride in enumerate(strides):
        p = f"_blocks.{b}"
        y = x
        if f"{p}._expand_conv.weight" in state:
            y = F.relu6(_bn(F.conv2d(y, state[f"{p}._expand_conv.weight"]), state, f"{p}._bn0"))
        w = state[f"{p}._depthwise_conv.weight"]
        y = F.relu6(_bn(_same_conv(y, w, stride, groups=w.shape[0]), state, f"{p}._bn1"))
        y = _bn(F.conv2d(y, state[f"{p}._project_conv.weight"]), state, f"{p}._bn2")
        x = x + y if stride == 1 and x.shape == y.shape else y
    return _classify(x, state)


def _trunk(output_stride=32):
    trunk = EfficientNetLite0Trunk(output_stride)
    load_pretrained(trunk, packaged_weights())
    return trunk.eval()


@pytest.mark.parametrize("size", [(224, 224), (181, 243)])  # odd sizes exercise the asymmetric padding
def test_mapped_trunk_reproduces_imagenet_logits(state, size):
    torch.manual_seed(0)
    pixels = torch.rand(2, 3, *size) * 255
    with torch.no_grad():
        ours = _classify(_trunk()(normalize(pixels / 255))[-1], state)
        reference = _reference_logits(pixels, state)
    assert torch.allclose(ours, reference, atol=1e-3, rtol=1e-4), (ours - reference).abs().max()
    assert torch.equal(ours.argmax(1), reference.argmax(1))


def test_every_file_tensor_is_used(state):
    trunk = _trunk()
    trunk_tensors = sum(1 for k in trunk.state_dict() if not k.endswith("num_batches_tracked"))
    classifier = [k for k in state if k.startswith(("_conv_head.", "_bn1.", "_fc."))]
    file_tensors = sum(1 for k in state if not k.endswith("num_batches_tracked"))
    assert len(state) == 296
    assert trunk_tensors + len([k for k in classifier if not k.endswith("num_batches_tracked")]) == file_tensors
    assert torch.equal(trunk.blocks[15].project[0].weight, state["_blocks.15._project_conv.weight"])
    assert torch.equal(trunk.stem[1].running_var, state["_bn0.running_var"])


# Top-1 ImageNet classes of real photographs: 829 streetcar, 919 street sign, 870 tricycle.
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not beside the repository")
@pytest.mark.parametrize(
    "image,top1",
    [
        ("camvid/test/0001TP_008550.png", 829),
        ("camvid/test/Seq05VD_f02640.png", 829),
        ("msrc21/test/11_14_s.jpg", 919),
        ("msrc21/test/8_27_s.jpg", 870),
    ],
)
def test_imagenet_top1_of_real_photographs(state, image, top1):
    pixels = F.interpolate(read_image(SHARED / image)[None].float(), size=(224, 224), mode="bilinear", antialias=True)
    with torch.no_grad():
        logits = _classify(_trunk()(normalize(pixels / 255))[-1], state)
    assert logits.argmax(1).item() == top1


@pytest.mark.parametrize("output_stride,side", [(8, 8), (16, 4), (32, 2)])
def test_output_stride_by_dilation(output_stride, side):
    trunk = EfficientNetLite0Trunk(output_stride).eval()
    with torch.no_grad():
        feats = trunk(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [24, 40, 112, 320] == list(trunk.channels)
    assert feats[0].shape[-2:] == (16, 16)  # low-level features at stride 4 for the decoder
    assert feats[-1].shape[-2:] == (side, side)
    dilations = [b.depthwise[0].dilation[0] for b in trunk.blocks]
    strides = [b.depthwise[0].stride[0] for b in trunk.blocks]
    if output_stride == 8:  # blocks 5 and 11 lose their stride; each keeps the dilation before it
        assert dilations == [1] * 6 + [2] * 6 + [4] * 4 and strides[5] == strides[11] == 1
    elif output_stride == 16:
        assert dilations == [1] * 12 + [2] * 4 and strides[5] == 2 and strides[11] == 1


def test_dilated_trunk_keeps_imagenet_features(state):
    """Dilation changes the sampling grid, not the weights: OS 16 features still classify alike."""
    pixels = torch.rand(1, 3, 224, 224) * 255
    with torch.no_grad():
        a = _classify(_trunk(32)(normalize(pixels / 255))[-1], state).softmax(1)
        b = _classify(_trunk(16)(normalize(pixels / 255))[-1], state).softmax(1)
    assert F.cosine_similarity(a, b).item() > 0.5


def test_imagenet_keyword_and_strict_loading(tmp_path, state):
    model = build_model("deeplabv3plus", "efficientnet_lite0", num_classes=3, output_stride=16, pretrained="imagenet")
    assert torch.equal(model.backbone.blocks[3].depthwise[0].weight, state["_blocks.3._depthwise_conv.weight"])
    local = tmp_path / "lite0.pth"  # an explicit local file works as well as the packaged one
    local.write_bytes(Path(packaged_weights()).read_bytes())
    from_file = build_model(
        "deeplabv3plus", "efficientnet_lite0", num_classes=3, output_stride=16, pretrained=str(local)
    )
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, from_file.backbone.state_dict()[key]), key
    with pytest.raises(ValueError, match="efficientnet_lite0 only.*local torchvision"):
        build_model("deeplabv3plus", "resnet18", num_classes=3, pretrained="imagenet")

    renamed = dict(state)
    renamed["_blocks.7._depthwise_kernel.weight"] = renamed.pop("_blocks.7._depthwise_conv.weight")
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    with pytest.raises(
        ValueError,
        match=r"renamed\.pth.*missing keys: blocks\.7\.depthwise\.0\.weight.*"
        r"unexpected keys: _blocks\.7\._depthwise_kernel\.weight",
    ):
        build_model("pspnet", "efficientnet_lite0", num_classes=3, pretrained=str(path))

    wrong = dict(state, **{"_blocks.2._project_conv.weight": torch.zeros(24, 96, 1, 1)})
    torch.save(wrong, path)
    with pytest.raises(
        ValueError,
        match=r"shape mismatches: _blocks\.2\._project_conv\.weight: "
        r"file \(24, 96, 1, 1\) vs model \(24, 144, 1, 1\)",
    ):
        build_model("deeplabv3plus", "efficientnet_lite0", num_classes=3, pretrained=str(path))

    path.write_bytes(b"not a torch file")
    with pytest.raises(
        ValueError, match=r"cannot load pretrained weights .*renamed\.pth: it is not a PyTorch checkpoint"
    ):
        build_model("deeplabv3plus", "efficientnet_lite0", num_classes=3, pretrained=str(path))


@pytest.mark.parametrize("arch", ["deeplabv3plus", "pspnet"])
def test_segmentation_model_shapes_and_head_width(arch):
    model = build_model(arch, "efficientnet_lite0", num_classes=5, output_stride=16, head_channels=32)
    model.train()
    out = model(torch.randn(2, 3, 50, 70))
    assert out.shape == (2, 5, 50, 70)
    out.mean().backward()
    assert model.head.classifier.in_channels == 32
    with pytest.raises(ValueError, match="not supported for deeplabv2"):
        build_model("deeplabv2", "efficientnet_lite0", num_classes=5)
