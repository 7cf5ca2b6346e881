"""The workflow's plan, from the (validated) config alone: which files each rule reads and
writes, and the arguments of each stage's command. Free of Snakemake and of torch, so that the
plan is tested like any code (tests/test_workflow_plan.py); rules/common.smk adapts these
methods to Snakemake's wildcards, checkpoints and resources.

Paths are relative to the working directory, as the rules' are: results/<experiment>/...
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from .seg.splits import parse_split_list, reliable_count

STUDENTS = ("st_student", "stpp_student1", "stpp_student2", "stpp_student3")
# The files one job writes together, by path relative to the experiment's folder (copied together).
SAME_JOB = {
    **dict.fromkeys(pair := ("teacher/stability_scores.tsv", "teacher/checkpoint_masks.h5"), pair),
    **dict.fromkeys(pair := ("stpp_split/reliable_ids.txt", "stpp_split/unreliable_ids.txt"), pair),
    **{f"{s}/{f}": (f"{s}/model.pt", f"{s}/train_log.tsv") for s in STUDENTS for f in ("model.pt", "train_log.tsv")},
}
SPLIT_LISTS = ("labeled", "unlabeled", "val", "test")  # test: optional (data.test)


def cli_args(**options) -> str:
    """--key value pairs; lists become several values, booleans --key / --no-key, None is left out."""
    out = []
    for key, value in options.items():
        flag = f"--{key.replace('_', '-')}"
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(flag if value else f"--no-{flag[2:]}")
        elif isinstance(value, (list, tuple)):
            if value:
                out += [flag, *map(str, value)]
        else:
            out += [flag, str(value)]
    return shlex.join(out)


def log_lines(path: str, level: str) -> list[str]:
    """The messages of a stage log's lines of one level (ERROR, WARNING): what the Snakefile
    prints on the console at the end of a run. [] for a log not written yet."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip().split(f" {level} ", 1)[1] for line in f if f" {level} " in line]


def one_of(names) -> str:
    """A wildcard regex matching exactly these names (none: a regex that matches nothing)."""
    return "|".join(map(re.escape, names)) or "(?!)"


def flat(tree: dict, prefix: str = "") -> dict:
    """{dotted key: value} of a nested dict."""
    out = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def teacher_settings(e: dict) -> dict:
    """What a teacher depends on: its data, model, schedule and K checkpoints (not the students'
    settings, labeling or scoring)."""
    d = e["data"]
    data = {key: d[key] for key in ("root", "labeled", "num_classes", "ignore_labels")}
    if e["train"]["val_every"]:
        data["val"] = d["val"]
    # how many DataLoader workers and how often the resume state is saved change no weight
    train = {k: v for k, v in e["train"].items() if k not in ("workers", "save_every_minutes")}
    return {"data": data, "model": e["model"], "train": train, "stpp.checkpoints": e["stpp"]["checkpoints"]}


class Plan:
    """The plan of a config whose defaults the schema has filled in (Snakemake's validate)."""

    def __init__(self, config: dict):
        self.config = config
        self.experiments = list(config["experiments"])
        self._keys: dict[tuple[str, str], tuple | None] = {}  # _key's, computed once per file

    def exp(self, experiment: str) -> dict:
        return self.config["experiments"][experiment]

    # -- checks the schema cannot make ------------------------------------------------------

    def check(self) -> None:
        """Raise ValueError naming the key of a setting that cannot work."""
        for name, e in self.config["experiments"].items():
            names = e["data"].get("class_names")
            if names is not None and len(names) != e["data"]["num_classes"]:
                raise ValueError(
                    f"config: experiments.{name}.data.class_names has {len(names)} names "
                    f"for num_classes {e['data']['num_classes']}"
                )
            if e["label"]["weights"] == "best" and e["train"]["val_every"] == 0:
                raise ValueError(
                    f"config: experiments.{name}.label.weights is 'best' but train.val_every is 0; "
                    "set val_every > 0 so training keeps best-on-validation weights"
                )
            if e["stpp"]["checkpoints"] > e["train"]["epochs"]:
                raise ValueError(f"config: experiments.{name}.stpp.checkpoints exceeds train.epochs")
            if e["teacher_from"] is not None:
                self._check_teacher_from(name, e)
            self._check_reliable_ratio(name, e)

    def _check_reliable_ratio(self, name: str, e: dict) -> None:
        """ST++ needs a reliable and an unreliable image: a ratio that leaves one half empty would
        fail only at student 1's training, after the teacher. Checked where the unlabeled list
        can be read now; the data check names a list that is missing."""
        unlabeled = self.split_list(name, "unlabeled")
        if "ST++" not in self.config["methods"] or not os.path.isfile(unlabeled):
            return
        n, ratio = len(parse_split_list(unlabeled)[0]), e["stpp"]["reliable_ratio"]
        if n == 1:
            raise ValueError(f"config: experiments.{name}: {unlabeled} has 1 image; ST++ splits at least 2")
        if n and reliable_count(n, ratio) == 0:  # the schema keeps ratio < 1, so never all n
            raise ValueError(
                f"config: experiments.{name}.stpp.reliable_ratio {ratio} makes none of the {n} images of "
                f"{unlabeled} reliable, and ST++ student 1 would have none to learn from; set it to at "
                f"least {1 / n:.3g}"
            )

    def _check_teacher_from(self, name: str, e: dict) -> None:
        source, experiments = e["teacher_from"], self.config["experiments"]
        where = f"config: experiments.{name}.teacher_from"
        if source not in experiments:
            raise ValueError(
                f"{where} names {source!r}, which is not an experiment of this config; add it, or remove "
                "teacher_from to train this experiment's own teacher"
            )
        if experiments[source]["teacher_from"] is not None:
            raise ValueError(
                f"{where}: {source!r} itself takes its teacher from "
                f"{experiments[source]['teacher_from']!r}; name that experiment instead"
            )
        ours, theirs = flat(teacher_settings(e)), flat(teacher_settings(experiments[source]))
        differ = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
        if differ:
            raise ValueError(
                f"{where}: {', '.join(differ)} differ from {source!r}'s and would change the teacher; "
                "make them equal, or remove teacher_from"
            )

    def own_teacher(self) -> list[str]:
        """The experiments that train their teacher (rule train_teacher); the rest copy one."""
        return [n for n in self.experiments if self.exp(n)["teacher_from"] is None]

    def borrowed_teacher(self) -> list[str]:
        return [n for n in self.experiments if self.exp(n)["teacher_from"] is not None]

    # -- what an experiment with teacher_from copies instead of computing ------------------

    def _upstream(self, experiment: str, rel: str) -> tuple[tuple, list[str], list[str]] | None:
        """What results/<experiment>/<rel> is computed from: the settings of the job that writes
        it (no path of the experiment's own folder in them), the files of that folder it reads
        (relative paths) and the other files it reads (data lists); None for a file that is
        never copied (the review's; the teacher's own are copy_teacher's)."""
        e, r = self.exp(experiment), f"results/{experiment}/"
        label, unlabeled = e["label"], self.split_list(experiment, "unlabeled")
        inference = (self.data_args(experiment, labels=False), label["batch_size"])
        model, _, name = rel.partition("/")
        if rel == "teacher/pseudo_masks_unlabeled.h5" or (model in STUDENTS and name.startswith("pseudo_masks_")):
            subset = name.removeprefix("pseudo_masks_").removesuffix(".h5")
            # label.shards is left out: any number of shards gives the same file
            settings = (*inference, self.tta_args(experiment), label["weights"])
            reads = [f"{r}{model}/model.pt", self.labeling_list(experiment, subset)]
        elif rel in ("teacher/stability_scores.tsv", "teacher/checkpoint_masks.h5"):
            # without --tta the scoring stage reads no scale or flip setting
            tta = self.tta_args(experiment) if e["stpp"]["score_tta"] else "--no-tta"
            settings, reads = (*inference, tta), [f"{r}teacher/model.pt", unlabeled]
        elif model == "stpp_split":
            settings = (e["stpp"]["reliable_ratio"], e["stpp"]["selection"], e["train"]["seed"])
            reads = [f"{r}teacher/stability_scores.tsv", self.pseudo_list(experiment)]
        elif model in STUDENTS and name in ("model.pt", "train_log.tsv"):
            settings = (self.train_args(experiment, model), self.split_list(experiment, "labeled"), unlabeled)
            reads = [path for pair in self.pseudo_sources(experiment, model) for path in pair]
        elif rel == "teacher/model.pt":
            return (), [], []  # the same teacher: check() refuses a teacher_from whose teacher differs
        else:
            return None
        own = [path.removeprefix(r) for path in reads if path.startswith(r)]
        return settings, own, [path for path in reads if not path.startswith(r)]

    def _key(self, experiment: str, rel: str):
        """A value equal for two experiments exactly where their file ``rel`` is the same file:
        the same settings all the way up to the shared teacher, and the same data lists; None
        where it cannot be copied."""
        if (experiment, rel) not in self._keys:
            up = self._upstream(experiment, rel)
            keys = None if up is None else [self._key(experiment, p) for p in up[1]]
            self._keys[experiment, rel] = (
                None if keys is None or None in keys else (rel, up[0], tuple(keys), tuple(up[2]))
            )
        return self._keys[experiment, rel]

    def _made(self, experiment: str) -> set[str]:
        """The files of its folder that an experiment's plan computes (relative paths): the
        students it trains and what they read, up to the teacher."""
        out, todo = set(), [f"{m}/model.pt" for _, m in self.method_models(experiment) if m != "teacher"]
        while todo:
            rel = todo.pop()
            up = self._upstream(experiment, rel)
            if rel not in out and up is not None:
                out.add(rel)
                todo += up[1]
        return out

    def copied_files(self, experiment: str) -> dict[str, str]:
        """{file of this experiment: the same file of its teacher_from experiment} for every file
        that both plans compute from the same settings, all the way up to the shared teacher:
        the teacher's pseudo-masks and scores, the split, students and relabels. Training and
        labeling are deterministic, so the copy is the file this experiment would write; an
        ablation of student 2 then trains student 2 alone, one of stpp.rounds: 3 only the third
        round, one of score_tta everything after the scoring. Files written together by one job
        (a student's model.pt and train_log.tsv, the two scoring files, the two split lists) are
        copied together."""
        source = self.exp(experiment)["teacher_from"]
        if source is None:
            return {}
        theirs = self._made(source)
        out = {}
        for rel in sorted(self._made(experiment) & theirs):
            if rel == "teacher/model.pt" or self._key(experiment, rel) != self._key(source, rel):
                continue
            for twin in SAME_JOB.get(rel, (rel,)):
                out[f"results/{experiment}/{twin}"] = f"results/{source}/{twin}"
        return out

    def copied(self) -> dict[str, str]:
        """copied_files of every experiment, in one dict."""
        return {k: v for name in self.experiments for k, v in self.copied_files(name).items()}

    # -- data -------------------------------------------------------------------------------

    def split_list(self, experiment: str, key: str) -> str | None:
        """Path of one of an experiment's split lists (relative to its data root unless
        absolute); None for a test list the experiment does not have."""
        data = self.exp(experiment)["data"]
        if data.get(key) is None:
            return None
        return os.path.join(data["root"], data[key])

    def list_args(self, experiment: str) -> str:
        """The data check's --labeled, --unlabeled, --val and (where set) --test."""
        return cli_args(**{key: self.split_list(experiment, key) for key in SPLIT_LISTS})

    def lists(self, experiment: str) -> list[str]:
        """The split lists of an experiment (the data check's inputs)."""
        return [p for p in (self.split_list(experiment, key) for key in SPLIT_LISTS) if p]

    def has_test(self, experiment: str) -> bool:
        return self.exp(experiment)["data"]["test"] is not None

    def data_args(self, experiment: str, labels: bool = True) -> str:
        data = self.exp(experiment)["data"]
        if not labels:
            return cli_args(data_root=data["root"])
        return cli_args(data_root=data["root"], num_classes=data["num_classes"], ignore_labels=data["ignore_labels"])

    def class_names(self, experiment: str) -> list[str]:
        data = self.exp(experiment)["data"]
        return data.get("class_names") or [str(c) for c in range(data["num_classes"])]

    # -- review (exclusions and corrected masks) --------------------------------------------

    def reviewed(self, experiment: str) -> bool:
        """Whether the experiment has a review: review.exclude or review.masks. Without, the
        plan is the plain workflow's: no apply_review job, every student reads the lists as is."""
        review = self.exp(experiment)["review"]
        return bool(review["exclude"] or review["masks"])

    def review_check_args(self, experiment: str) -> str:
        review = self.exp(experiment)["review"]
        return cli_args(review_exclude=review["exclude"], review_masks=review["masks"])

    def review_files(self, experiment: str) -> list[str]:
        """The exclusion list and each PNG of the corrected-masks folder, as they are now: the
        data check's fingerprint, so that editing one re-runs the check."""
        exclude = self.exp(experiment)["review"]["exclude"]
        return ([exclude] if exclude else []) + self.corrected_files(experiment)

    def corrected_files(self, experiment: str) -> list[str]:
        """The PNGs of the corrected-masks folder as it is now (each a mask every student trains on)."""
        masks = self.exp(experiment)["review"]["masks"]
        return sorted(str(p) for p in Path(masks).rglob("*.png")) if masks and os.path.isdir(masks) else []

    def review_outputs(self, experiment: str) -> dict[str, str]:
        """apply_review's outputs, by the audit's option names (kept, corrected, corrected_masks)."""
        r = f"results/{experiment}/review"
        return {
            "kept": f"{r}/kept_ids.txt",
            "corrected": f"{r}/corrected_ids.txt",
            "corrected_masks": f"{r}/corrected_masks.h5",
        }

    def review_artifacts(self, experiment: str) -> dict[str, str]:
        """What the audit reads of the review: apply_review's outputs, or {} without a review."""
        return self.review_outputs(experiment) if self.reviewed(experiment) else {}

    def pseudo_list(self, experiment: str) -> str:
        """The unlabeled images that are pseudo-labeled for training and that ST++ splits: the
        unlabeled list, less the excluded and the corrected images where there is a review."""
        if self.reviewed(experiment):
            return self.review_outputs(experiment)["kept"]
        return self.split_list(experiment, "unlabeled")

    def corrections_source(self, experiment: str) -> list[tuple[str, str]]:
        """[(corrected_ids.txt, corrected_masks.h5)] where there are corrected masks, else []."""
        if not self.corrected_files(experiment):
            return []
        out = self.review_outputs(experiment)
        return [(out["corrected"], out["corrected_masks"])]

    # -- methods ----------------------------------------------------------------------------

    def rounds(self, experiment: str) -> int:
        """ST++'s rounds for an experiment: its stpp.rounds, else the config's rounds."""
        return self.exp(experiment)["stpp"]["rounds"] or self.config["rounds"]

    def method_models(self, experiment: str) -> list[tuple[str, str]]:
        """Rows of the summary: (method name, trained model) in the configured order."""
        methods, n = self.config["methods"], self.rounds(experiment)
        rows = []
        if "SupOnly" in methods:
            rows.append(("SupOnly", "teacher"))
        if "ST" in methods:
            rows.append(("ST", "st_student"))
        if "ST++" in methods:
            rows.append(("ST++ student 1", "stpp_student1"))
            if n == 3:
                rows.append(("ST++ student 2", "stpp_student2"))
            rows.append(("ST++ final", f"stpp_student{n}"))
        return rows

    def summary_inputs(self, experiment: str) -> list[str]:
        return [f"results/{experiment}/{model}/metrics.json" for _, model in self.method_models(experiment)]

    def summary_args(self, experiment: str) -> str:
        """NAME=metrics.json per method, as stages.summarize takes them."""
        names = [name for name, _ in self.method_models(experiment)]
        return shlex.join(f"{n}={p}" for n, p in zip(names, self.summary_inputs(experiment), strict=True))

    def test_targets(self) -> list[str]:
        """Every trained model's evaluation on data.test, for the experiments that have one."""
        return [
            f"results/{name}/{model}/test/metrics.json"
            for name in self.experiments
            if self.has_test(name)
            for _, model in self.method_models(name)
        ]

    def audit_targets(self) -> list[str]:
        """The audit, its figures and the charts of every experiment (the audit where
        pseudo-masks exist), and with ST++ the review sheet."""
        methods = set(self.config["methods"])
        names = ["training_curves.png", "summary.png"]
        if methods & {"ST", "ST++"}:
            selections = ["most_stable", "least_stable", "random"] if "ST++" in methods else ["random"]
            names += ["audit.json", *(f"contact_{s}.png" for s in selections)]
        if "ST++" in methods:
            names.append("stability_scores.png")
        sheets = [f"results/{e}/review_sheet" for e in self.experiments] if "ST++" in methods else []
        return [f"results/{e}/audit/{n}" for e in self.experiments for n in names] + sheets

    # -- training ---------------------------------------------------------------------------

    def train_epochs(self, experiment: str, student: str | None) -> int:
        """train.epochs, but for ST++ student 1 where stpp.student1_epochs is set."""
        e = self.exp(experiment)
        if student == "stpp_student1" and e["stpp"]["student1_epochs"]:
            return e["stpp"]["student1_epochs"]
        return e["train"]["epochs"]

    def model_name(self, experiment: str, student: str | None) -> str | None:
        """The trained model's name (teacher, st_student, ...), which seeds its random
        initialisation under train.init: per_model; None under train.init: shared."""
        if self.exp(experiment)["train"]["init"] == "shared":
            return None
        return student or "teacher"

    def teacher_epochs(self, experiment: str, student: str | None) -> int | None:
        """For a student under stpp.student_schedule: labeled_passes, the teacher's epochs, from
        which the trainer sets the student's (stages.train.schedule_epochs); None for the
        teacher and under the paper's equal-epochs rule."""
        e = self.exp(experiment)
        if student and e["stpp"]["student_schedule"] == "labeled_passes":
            return e["train"]["epochs"]
        return None

    def train_args(self, experiment: str, student: str | None, checkpoints: int = 1) -> str:
        """A training job's settings: everything that changes the model."""
        e = self.exp(experiment)
        m, t = e["model"], e["train"]
        val = self.split_list(experiment, "val") if t["val_every"] else None
        model = cli_args(
            arch=m["arch"],
            backbone=m["backbone"],
            output_stride=m["output_stride"],
            pretrained=m["pretrained"],
            head_channels=m["head_channels"],
        )
        schedule = cli_args(
            epochs=self.train_epochs(experiment, student),
            lr=t["lr"],
            head_lr_multiplier=t["head_lr_multiplier"],
            momentum=t["momentum"],
            weight_decay=t["weight_decay"],
            poly_power=t["poly_power"],
            checkpoints=checkpoints,
            seed=t["seed"],
            model_name=self.model_name(experiment, student),
            teacher_epochs=self.teacher_epochs(experiment, student),
            batch_size=t["batch_size"],
            amp=t["amp"],
            crop_size=t["crop_size"],
            base_size=t["base_size"],
            scale_range=t["scale_range"],
            strong=t["strong_augmentation"],
            min_labeled=t["min_labeled"],
            val=val,
            eval_every=t["val_every"] or None,
            sync_bn=t["sync_bn"] if t["gpus"] > 1 else None,
        )
        return " ".join([self.data_args(experiment), model, schedule])

    def runtime_args(self, threads: int, batch_size: int | None = None, workers: int = 0, training=False) -> str:
        """Device, threads, batch and the config's speed switches (those of training or of inference)."""
        s = self.config["speed"]
        channels_last = {True: "on", False: "off"}.get(s["channels_last"], s["channels_last"])  # YAML true / false
        switches = dict(
            channels_last=channels_last, cudnn_benchmark=s["cudnn_benchmark"], prefetch_factor=s["prefetch_factor"]
        )
        if training:
            switches.update(compile=s["compile"])
        else:
            switches.update(fold_batch_norm=s["fold_batch_norm"], amp=s["inference_amp"])
        return cli_args(
            device=self.config["device"], threads=threads, batch_size=batch_size, workers=workers, **switches
        )

    def train_runtime_args(self, experiment: str, threads: int) -> str:
        """How a training job runs, not what it learns (changing it re-trains nothing); with
        several processes (train.gpus) the job's threads are shared among them."""
        t = self.exp(experiment)["train"]
        return " ".join(
            [
                self.runtime_args(max(1, threads // t["gpus"]), workers=t["workers"], training=True),
                cli_args(save_every_minutes=t["save_every_minutes"]),
            ]
        )

    def trainer(self, experiment: str) -> str:
        """The training command: one process, or train.gpus processes under torchrun (DDP)."""
        gpus = self.exp(experiment)["train"]["gpus"]
        if gpus == 1:
            return "python -m stages.train"
        return f"python -m torch.distributed.run --standalone --nproc-per-node {gpus} --module stages.train"

    # -- pseudo-labels ----------------------------------------------------------------------

    def tta_args(self, experiment: str, tta: bool = True) -> str:
        label = self.exp(experiment)["label"]
        return cli_args(tta=tta, scales=label["scales"], flip=label["flip"], resize_logits=label["resize_logits"])

    def teacher_checkpoints(self, experiment: str) -> list[str]:
        """Checkpoints 1..K of the teacher, the final model last."""
        k = self.exp(experiment)["stpp"]["checkpoints"]
        base = f"results/{experiment}/teacher"
        return [*(f"{base}/checkpoints/checkpoint_{j}.pt" for j in range(1, k)), f"{base}/model.pt"]

    def labeling_weights(self, experiment: str, model: str) -> str:
        """The weights that label: the final model, or best.pt that the same training job wrote."""
        name = "best.pt" if self.exp(experiment)["label"]["weights"] == "best" else "model.pt"
        return f"results/{experiment}/{model}/{name}"

    def labeling_list(self, experiment: str, subset: str) -> str:
        if subset == "unreliable":
            return f"results/{experiment}/stpp_split/unreliable_ids.txt"
        return self.split_list(experiment, "unlabeled")

    def shard_files(self, experiment: str, folder: str, suffix: str) -> list[str]:
        """``folder``'s shard files shard_<i>_of_<n><suffix>, one per label.shards."""
        n = self.exp(experiment)["label"]["shards"]
        return [f"{folder}/shard_{i}_of_{n}{suffix}" for i in range(n)]

    def pseudo_sources(self, experiment: str, student: str) -> list[tuple[str, str]]:
        """(split list, mask store) pairs a student trains on, by the ST / ST++ recipe."""
        r = f"results/{experiment}"
        unlabeled = self.pseudo_list(experiment)
        reliable = (f"{r}/stpp_split/reliable_ids.txt", f"{r}/teacher/pseudo_masks_unlabeled.h5")
        sources = {
            "st_student": [(unlabeled, f"{r}/teacher/pseudo_masks_unlabeled.h5")],
            "stpp_student1": [reliable],
            "stpp_student2": [
                reliable,
                (f"{r}/stpp_split/unreliable_ids.txt", f"{r}/stpp_student1/pseudo_masks_unreliable.h5"),
            ],
            "stpp_student3": [(unlabeled, f"{r}/stpp_student2/pseudo_masks_unlabeled.h5")],
        }[student]
        return sources + self.corrections_source(experiment)  # a corrected image: reliable, never relabeled

    def pseudo_args(self, experiment: str, student: str) -> str:
        return " ".join(f"--pseudo {shlex.join(pair)}" for pair in self.pseudo_sources(experiment, student))

    def pseudo_label_artifacts(self, experiment: str, *stpp_keys: str) -> dict[str, str]:
        """The teacher's pseudo-masks and, when ST++ runs, the named ST++ outputs, as stage options."""
        r = f"results/{experiment}"
        stpp = {
            "scores": f"{r}/teacher/stability_scores.tsv",
            "reliable": f"{r}/stpp_split/reliable_ids.txt",
            "unreliable": f"{r}/stpp_split/unreliable_ids.txt",
            "checkpoint_masks": f"{r}/teacher/checkpoint_masks.h5",
            "relabeled": f"{r}/stpp_student1/pseudo_masks_unreliable.h5",
        }
        inputs = {"teacher_masks": f"{r}/teacher/pseudo_masks_unlabeled.h5"}
        if "ST++" in self.config["methods"]:
            inputs.update({key: stpp[key] for key in stpp_keys})
        return inputs
