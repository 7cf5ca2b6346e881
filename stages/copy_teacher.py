"""Take another experiment's teacher as this experiment's (config ``teacher_from``).

    python -m stages.copy_teacher --source results/<other>/teacher --out-dir results/<this>/teacher

Copies what the teacher's training wrote (``model.pt``, ``checkpoints/``, ``train_log.tsv`` and,
where the source kept one, ``best.pt``), each file atomically, so that this experiment's
labeling, scoring and evaluation run on the very weights of the other's teacher while the rest of
its settings (students, R, TTA, schedule) may differ: the paper's ablations share their teacher.
Copies rather than links: a copy is newer than its source, so Snakemake's file times order the
DAG as for a teacher trained here, and re-training the source re-copies it.

    python -m stages.copy_teacher --source ... --out-dir ... --files pseudo_masks_unlabeled.h5

copies the named files of a folder of the other experiment instead (rule copy_shared): its
teacher's pseudo-masks and scores, its split, students or relabels, where this experiment
would compute the same file from the same settings (``Plan.copied_files``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .seg import cli
from .seg.files import atomic_path
from .workflow.layout import BEST_FILE, CHECKPOINTS_FOLDER, LOG_FILE, MODEL_FILE

log = logging.getLogger("stpp")


def build_parser():
    p = cli.parser(__doc__.split("\n\n")[0])
    p.add_argument(
        "--source", required=True, help="the other experiment's teacher folder (or, with --files, any of its folders)"
    )
    p.add_argument("--out-dir", required=True, help="this experiment's folder of the same name")
    p.add_argument("--files", nargs="+", help="copy these files of the folder instead of the training outputs")
    return p


def copy_teacher(args) -> None:
    source, out = Path(args.source), Path(args.out_dir)
    if args.files:
        files = [source / name for name in args.files]
    else:
        files = [source / MODEL_FILE, source / LOG_FILE, *sorted((source / CHECKPOINTS_FOLDER).glob("*.pt"))]
        files += [source / BEST_FILE] if (source / BEST_FILE).exists() else []
    for src in files:
        dst = out / src.relative_to(source)
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    if not args.files:
        (out / CHECKPOINTS_FOLDER).mkdir(parents=True, exist_ok=True)  # K = 1 keeps none, the folder is an output
    log.info("copied %d files of %s to %s", len(files), source, out)


def main(argv=None) -> None:
    cli.run(copy_teacher, build_parser(), argv)


if __name__ == "__main__":
    main()
