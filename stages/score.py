"""Score the stability of every unlabeled image over the teacher's K checkpoints (stage 3).

    python -m stages.score --checkpoints checkpoint_1.pt checkpoint_2.pt model.pt --list unlabeled.txt \\
        --num-classes C --scores stability_scores.tsv --masks checkpoint_masks.h5 [--tta] \\
        [--shard i --num-shards n]

Each checkpoint predicts every image (no TTA by default, as the reference code; ``--tta`` as
the paper says). The score is s = sum over j < K of meanIoU(M_j, M_K), the nan-mean over classes
present in either mask. Writes ``stability_scores.tsv`` (id, score, miou_1..miou_{K-1}) in list
order and, for auditing, the predicted masks in an HDF5 store: one (K, H, W) uint8 dataset per id.
``--shard i --num-shards n`` scores every n-th image from the i-th (as ``stages.label`` shards);
``stages.merge_scores`` joins the shards into the files one job would have written.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .seg import cli, speed
from .seg.data import ImageDataset, read_split_list
from .seg.files import atomic_path
from .seg.inference import batches_by_size, predict
from .seg.io import load_model, resolve_device
from .seg.maskstore import MaskStoreWriter
from .seg.metrics import stability_score

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument("--checkpoints", nargs="+", required=True, help="checkpoints 1..K, the final model last")
    p.add_argument("--list", required=True, help="split list of the unlabeled images")
    p.add_argument("--scores", required=True, help="stability_scores.tsv to write")
    p.add_argument("--masks", required=True, help="HDF5 store of every checkpoint's masks, for auditing")
    p.add_argument("--num-classes", type=int, required=True)
    cli.add_data_args(p, labels=False)
    cli.add_tta_args(p, default_on=False)
    cli.add_shard_args(p)
    cli.add_runtime_args(p)
    cli.add_speed_args(p, training=False)
    p.set_defaults(batch_size=4)  # the schema's label.batch_size, which the rule passes
    return p


def score(args) -> None:
    if len(args.checkpoints) < 2:
        raise ValueError("--checkpoints needs at least 2 files (the teacher's K >= 2)")
    samples = cli.shard_of(read_split_list(args.list), args)
    device = resolve_device(args.device)
    models = [
        speed.for_inference(load_model(path, device, args.num_classes), device, args) for path in args.checkpoints
    ]
    amp = speed.amp_dtype(args.amp, device)
    tta = cli.tta_settings(args)
    k = len(models)
    log.info(
        "scoring %d images of %s (shard %d/%d) with %d checkpoints, TTA %s",
        len(samples),
        args.list,
        args.shard,
        args.num_shards,
        k,
        tta,
    )
    header = "\t".join(["id", "score", *(f"miou_{j}" for j in range(1, k))])
    attrs = {
        "checkpoints": list(map(str, args.checkpoints)),
        **{f"tta_{key}": value for key, value in tta.items()},
        "shard": args.shard,
        "num_shards": args.num_shards,
    }
    predicting = scoring = 0.0  # seconds: the K predictions, and what scoring adds to them
    with atomic_path(args.scores) as tmp, open(tmp, "w") as tsv, MaskStoreWriter(args.masks, attrs) as store:
        tsv.write(header + "\n")
        for ids, images, _ in batches_by_size(
            ImageDataset(args.data_root, samples), args.batch_size, args.workers, device, "scored", args.prefetch_factor
        ):
            t0 = time.perf_counter()
            masks = np.stack(
                [predict(m, images, **tta, amp_dtype=amp).cpu().numpy() for m in models], axis=1
            )  # (N, K, H, W)
            t1 = time.perf_counter()
            for image_id, per_ckpt in zip(ids, masks, strict=True):
                s, ious = stability_score(list(per_ckpt), args.num_classes)
                tsv.write("\t".join([image_id, f"{s:.6f}", *(f"{v:.6f}" for v in ious)]) + "\n")
                store.write(image_id, per_ckpt)
            predicting, scoring = predicting + t1 - t0, scoring + time.perf_counter() - t1
    log.info(
        "the %d checkpoints' predictions took %.1f s; the scores and the mask store %.2f s more (%.1f%%)",
        k,
        predicting,
        scoring,
        100 * scoring / max(predicting, 1e-9),
    )
    log.info("wrote %s and %s", args.scores, args.masks)


def main(argv=None) -> None:
    cli.run(score, build_parser(), argv)


if __name__ == "__main__":
    main()
