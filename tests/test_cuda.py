"""The CUDA paths that a CPU never takes, each small: mixed precision (bf16, fp16 with the grad
scaler) in the trainer's own step, channels-last, labeling under autocast, and pinned memory.
Skipped without CUDA; benchmarks/gpu_check.py runs them (`pytest -m cuda`)."""

from __future__ import annotations

import pytest
import torch

from stages.seg.inference import batches_by_size, predict
from stages.seg.models import build_model, param_groups
from stages.seg.speed import amp_dtype, channels_last_wanted
from stages.train import mixed_precision, train_step

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]
DEVICE = torch.device("cuda") if torch.cuda.is_available() else None


def small_model():
    torch.manual_seed(0)
    return build_model("deeplabv3plus", "resnet18", num_classes=3, output_stride=16).to(DEVICE)


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 64, 64, generator=g).to(DEVICE), torch.randint(0, 3, (4, 64, 64), generator=g).to(DEVICE)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_mixed_precision_training_steps_lower_the_loss_like_fp32(amp):
    """The trainer's step under autocast (fp16 with the grad scaler, which must not skip every
    step): finite losses that fall over 20 steps on one batch, as fp32's do."""
    dtype, scaler = mixed_precision(amp, DEVICE)
    assert dtype == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert scaler.is_enabled() == (amp == "fp16")
    model = small_model().train()
    optimizer = torch.optim.SGD(param_groups(model, 0.01, 10.0), lr=0.01, momentum=0.9)
    images, masks = batch()
    losses = [train_step(model, optimizer, scaler, images, masks, DEVICE, dtype) for _ in range(20)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]
    if amp == "fp16":
        assert scaler.get_scale() > 1  # the scaler kept a usable scale (not collapsed by overflows)


def test_channels_last_training_and_inference_match_contiguous():
    """NHWC on CUDA (speed.channels_last: auto means on there): the same predictions as NCHW
    to within cuDNN's algorithm differences, and a training step that runs."""
    assert channels_last_wanted("auto", DEVICE, "resnet50", training=True)
    model = small_model().eval()
    nhwc = small_model().eval().to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, device=DEVICE)
    agree = (predict(model, images) == predict(nhwc, images)).float().mean()
    assert agree > 0.99
    dtype, scaler = mixed_precision("none", DEVICE)
    x, y = batch()
    loss = train_step(nhwc.train(), torch.optim.SGD(nhwc.parameters(), lr=0.01), scaler, x, y, DEVICE, dtype)
    assert torch.isfinite(torch.tensor(loss))


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_labeling_under_autocast_agrees_with_fp32(amp):
    """speed.inference_amp on CUDA: TTA masks under autocast agree with float32's on almost every
    pixel."""
    model = small_model().eval()
    images = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8, device=DEVICE)
    reference = predict(model, images, (0.5, 1.0, 1.5), True)
    mixed = predict(model, images, (0.5, 1.0, 1.5), True, amp_dtype=amp_dtype(amp, DEVICE))
    assert (reference == mixed).float().mean() > 0.98


def test_batches_reach_the_gpu_through_pinned_memory():
    """The inference loader's batches arrive on the GPU (copied from pinned host memory without
    blocking), grouped by size, in list order."""

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return f"img{i}", torch.full((3, 8 if i < 3 else 12, 8), i, dtype=torch.uint8)

    got = list(batches_by_size(Images(), batch_size=2, num_workers=0, device=DEVICE, what="images"))
    assert [ids for ids, _, _ in got] == [["img0", "img1"], ["img2"], ["img3", "img4"]]
    assert all(images.is_cuda for _, images, _ in got)
    assert int(got[2][1][1, 0, 0, 0]) == 4
