"""The plain baselines that benchmarks/performance.py measures the stages against: each does a
stage's work as a short script would, without the stage's machinery (no shards, no mask store,
no prefetching, no batching of inference). Run as ``python benchmarks/baselines.py <name> ...``,
a process of its own as each stage is.

- ``plain-train``: a training loop as torchvision's references/segmentation would write it
  (PIL decoding, the weak augmentation written out plainly, the model, SGD);
- ``naive-label``: TTA labeling one image at a time, one PNG each (as the reference code does);
- ``naive-evaluate``: one image at a time, one pass, a confusion matrix by bincount;
- ``naive-predict``: one image at a time, one pass, the mask as a PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TTA_SCALES = (0.5, 0.75, 1.0, 1.5, 2.0)  # the paper's, as stages.label's default


class PlainPairs:
    """The baseline's data: PIL decoding and the weak augmentation written out plainly."""

    def __init__(self, root: Path, lines: list[str], crop: int, ignore: int, repeat: int):
        self.root, self.crop, self.ignore = root, crop, ignore
        self.pairs = [line.split() for line in lines] * repeat

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        import torch
        from PIL import Image

        image = Image.open(self.root / self.pairs[i][0]).convert("RGB")
        mask = Image.open(self.root / self.pairs[i][1])
        w, h = image.size
        long_side = int(torch.randint(int(0.5 * max(w, h)), int(2.0 * max(w, h)) + 1, ()))
        ow, oh = (long_side, int(h * long_side / w + 0.5)) if w >= h else (int(w * long_side / h + 0.5), long_side)
        image, mask = image.resize((ow, oh), Image.BILINEAR), mask.resize((ow, oh), Image.NEAREST)
        img, msk = np.asarray(image, dtype=np.float32) / 255.0, np.asarray(mask).astype(np.int64)
        msk[msk == self.ignore] = 255
        ph, pw = max(self.crop - oh, 0), max(self.crop - ow, 0)
        img = np.pad(img, ((0, ph), (0, pw), (0, 0)))
        msk = np.pad(msk, ((0, ph), (0, pw)), constant_values=255)
        y = int(torch.randint(0, img.shape[0] - self.crop + 1, ()))
        x = int(torch.randint(0, img.shape[1] - self.crop + 1, ()))
        img, msk = img[y : y + self.crop, x : x + self.crop], msk[y : y + self.crop, x : x + self.crop]
        if torch.rand(()) < 0.5:
            img, msk = img[:, ::-1], msk[:, ::-1]
        img = (img - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
        return torch.from_numpy(img.transpose(2, 0, 1).copy()), torch.from_numpy(msk.copy())


def plain_train(argv) -> None:
    """The baseline training loop: as torchvision's references/segmentation would write it."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from stages.seg.models import build_model, param_groups

    p = argparse.ArgumentParser()
    for k in ("data-root", "labeled", "arch", "backbone", "pretrained", "out"):
        p.add_argument(f"--{k}", default=None)
    for k in (
        "num-classes",
        "ignore-labels",
        "output-stride",
        "head-channels",
        "crop-size",
        "batch-size",
        "epochs",
        "min-labeled",
        "workers",
        "threads",
    ):
        p.add_argument(f"--{k}", type=int)
    p.add_argument("--lr", type=float)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    lines = Path(a.labeled).read_text().split("\n")
    lines = [line for line in lines if line.strip()]
    data = PlainPairs(Path(a.data_root), lines, a.crop_size, a.ignore_labels, -(-a.min_labeled // len(lines)))
    model = build_model(
        a.arch, a.backbone, a.num_classes, a.output_stride, pretrained=a.pretrained, head_channels=a.head_channels
    ).train()
    lr = a.lr * a.batch_size / 16
    opt = torch.optim.SGD(param_groups(model, lr, 10.0), lr=lr, momentum=0.9, weight_decay=1e-4)
    speeds = []
    for _ in range(a.epochs):
        t0, n = time.time(), 0
        for images, masks in DataLoader(data, a.batch_size, shuffle=True, drop_last=True, num_workers=a.workers):
            loss = F.cross_entropy(model(images), masks, ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
            n += len(images)
        speeds.append(n / (time.time() - t0))
    Path(a.out).write_text(json.dumps({"images_per_s": speeds}))


def one_at_a_time(argv):
    """A naive loop's model, its images one at a time ((name, normalised (1, 3, H, W)) as a
    generator) and its output folder, from the arguments MODEL LIST ROOT OUT THREADS."""
    import torch
    from PIL import Image

    from stages.seg.io import load_model

    model_path, lst, root, out, threads = argv
    torch.set_num_threads(int(threads))
    model = load_model(model_path)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    Path(out).mkdir(parents=True, exist_ok=True)

    def images():
        for line in Path(lst).read_text().splitlines():
            name = line.split()[0]
            img = torch.from_numpy(np.asarray(Image.open(Path(root) / name).convert("RGB")).copy())
            yield name, (img.permute(2, 0, 1)[None].float() / 255 - mean) / std

    return model, images(), Path(out)


def naive_label(argv) -> None:
    """One image at a time: decode, 10 passes (the paper's scales x flip, softmax at the scaled
    size, resized back, summed), argmax, one PNG per image (as the reference code writes them)."""
    import torch
    import torch.nn.functional as F
    from PIL import Image

    model, images, out = one_at_a_time(argv)
    with torch.no_grad():
        for name, x in images:
            h, w = x.shape[-2:]
            total = 0
            for s in TTA_SCALES:
                xs = F.interpolate(x, (round(h * s), round(w * s)), mode="bilinear", align_corners=False)
                for flip in (False, True):
                    p = model(xs.flip(-1) if flip else xs).softmax(1)
                    p = p.flip(-1) if flip else p
                    total = total + F.interpolate(p, (h, w), mode="bilinear", align_corners=False)
            Image.fromarray(total.argmax(1)[0].byte().numpy()).save(Path(out) / Path(name).name)


def naive_evaluate(argv) -> None:
    """One image at a time: decode image and mask, one pass, argmax, a confusion matrix by bincount."""
    import torch
    from PIL import Image

    from stages.seg.io import load_model

    model_path, lst, root, threads, classes, ignore, out = argv
    torch.set_num_threads(int(threads))
    c = int(classes)
    model = load_model(model_path)
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    cm = np.zeros((c, c), np.int64)
    with torch.no_grad():
        for line in Path(lst).read_text().splitlines():
            image, mask = line.split()
            img = torch.from_numpy(np.asarray(Image.open(Path(root) / image).convert("RGB")).copy())
            pred = model((img.permute(2, 0, 1)[None].float() / 255 - mean) / std).argmax(1)[0].numpy()
            gt = np.asarray(Image.open(Path(root) / mask)).astype(np.int64)
            keep = (gt < c) & (gt != int(ignore))
            cm += np.bincount(c * gt[keep] + pred[keep], minlength=c * c).reshape(c, c)
    Path(out).write_text(json.dumps({"miou": float(np.nanmean(np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))))}))


def naive_predict(argv) -> None:
    """One image at a time: decode, one pass, argmax, the mask as a PNG (what a user's first
    script for new images does; stages.predict also writes colour masks and overlays)."""
    import torch
    from PIL import Image

    model, images, out = one_at_a_time(argv)
    with torch.no_grad():
        for name, x in images:
            Image.fromarray(model(x).argmax(1)[0].byte().numpy()).save(out / Path(name).name)


BASELINES = {
    "plain-train": plain_train,
    "naive-label": naive_label,
    "naive-evaluate": naive_evaluate,
    "naive-predict": naive_predict,
}


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BASELINES:
        raise SystemExit(f"usage: baselines.py {{{','.join(BASELINES)}}} ...")
    BASELINES[argv[0]](argv[1:])


if __name__ == "__main__":
    main()
