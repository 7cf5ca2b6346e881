"""The workflow's plan, from the (validated) config alone: for each rule, one method that returns
its :class:`Step`, everything its command depends on: the files it reads and its settings.

Free of Snakemake and of torch, so that the plan is tested like any code
(tests/test_workflow_plan.py); rules/common.smk adapts it to Snakemake. A rule's ``params`` are
its step's settings (a canonical text: sorted flags, no mapping passed raw), so Snakemake re-runs
a job exactly when a value its command reads changed; what an experiment with ``teacher_from``
copies instead of computing follows from the same steps (:meth:`Plan.copy_key`): no second list
of "settings that matter" exists. Paths come from stages/workflow/layout.py.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..seg.palettes import BUILT_IN as BUILT_IN_PALETTES
from ..seg.splits import parse_split_list, reliable_count
from . import layout as L
from .layout import STRONG_OPS, fill

# Rules whose outputs an experiment with teacher_from computes itself, whatever their key: the
# teacher (rule copy_teacher copies it whole), a shard (temporary: its merge is what is copied)
# and the review (an experiment's own decision; everything downstream of it is then its own too).
NEVER_COPIED = ("train_teacher", "label_shard", "score_shard", "apply_review")


def cli_args(**options) -> str:
    """--key value pairs, in sorted key order so that equal settings give equal text; lists
    become several values, booleans --key / --no-key, None is left out."""
    out = []
    for key, value in sorted(options.items()):
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


def label_map_args(label_map) -> list[str]:
    """data.label_map as the stages' --label-map takes it: a built-in table's name, or sorted
    STORED:CLASS pairs ([] for none)."""
    if not label_map:
        return []
    if isinstance(label_map, str):
        return [label_map]
    return [f"{int(stored)}:{target}" for stored, target in sorted(label_map.items(), key=lambda kv: int(kv[0]))]


def files_stamp(files) -> str:
    """A fingerprint of files by path, size and modification time (a missing one as missing):
    a params value that re-runs a job when a file it reads changes, without Snakemake resolving
    each file as an input."""
    stamp = hashlib.sha256()
    for f in files:
        try:
            st = os.stat(f)
            stamp.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            stamp.update(f"{f}\0missing\n".encode())
    return stamp.hexdigest()


def pairs_args(flag: str, paths) -> str:
    """``--flag a b --flag c d`` for the paths a, b, c, d (a stage option of two values, repeated)."""
    paths = list(paths)
    return " ".join(f"--{flag} {shlex.join(paths[i : i + 2])}" for i in range(0, len(paths), 2))


@dataclass(frozen=True)
class Step:
    """What one job's command depends on. ``inputs``: the files it reads, by name (a path or a
    list of paths), Snakemake's inputs; ``settings``: the options of its command that change its
    outputs, by option name (``cli_args`` spells them). How it runs (threads, device, batch size of
    inference, DataLoader workers) is no setting: changing it re-runs nothing."""

    inputs: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)

    @property
    def args(self) -> str:
        return cli_args(**self.settings)

    def files(self) -> list[str]:
        """Every input path, in order."""
        return [p for value in self.inputs.values() for p in ([value] if isinstance(value, str) else value)]


# Each wildcard's values, for matching a path to the rule that writes it.
_WILDCARD_VALUES = {"model": L.MODELS, "subset": L.SUBSETS, "selection": L.SELECTIONS, "phase": L.PIXEL_PHASES}


def _pattern_regex(pattern: str, rule: str) -> re.Pattern:
    values = {**_WILDCARD_VALUES, **L.RULE_WILDCARDS.get(rule, {})}
    regex, seen = "", set()
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", pattern):
        regex += re.escape(literal)
        if name:
            body = one_of(values[name]) if name in values else (r"\d+" if name in ("shard", "shards") else "[^/]+")
            regex += f"(?P={name})" if name in seen else f"(?P<{name}>{body})"
            seen.add(name)
    return re.compile(regex + r"\Z")


# The rules that write an experiment's files, each output pattern as a regex (copy_teacher writes
# train_teacher's files; in the plan they are train_teacher's).
_PRODUCERS = [
    (rule, name, _pattern_regex(pattern, rule))
    for rule, outputs in L.OUTPUTS.items()
    if rule not in ("copy_teacher", "make_demo")
    for name, pattern in outputs.items()
]


def producer(path: str) -> tuple[str, dict] | None:
    """(rule, wildcards) of the rule that writes ``path``; None for a file no rule writes."""
    for rule, _, regex in _PRODUCERS:
        m = regex.match(path)
        if m:
            return rule, m.groupdict()
    return None


class Plan:
    """The plan of a config whose defaults the schema has filled in (Snakemake's validate)."""

    def __init__(self, config: dict):
        self.config = config
        self.experiments = list(config["experiments"])
        self._keys: dict[tuple[str, str], tuple | None] = {}  # copy_key's, computed once per file

    def exp(self, experiment: str) -> dict:
        return self.config["experiments"][experiment]

    # -- each rule's step ---------------------------------------------------------------------

    def step(self, rule: str, experiment: str | None = None, **wildcards) -> Step:
        """The step of one job of ``rule``: its method of this class, given the wildcards it
        takes (a shard's index and count are how the job is split, not what it computes)."""
        method = getattr(self, rule)
        wanted = inspect.signature(method).parameters
        given = {k: v for k, v in {"experiment": experiment, **wildcards}.items() if k in wanted}
        return method(**given)

    def make_demo(self) -> Step:
        return Step(settings=dict(self.config["demo"]))

    def check_data(self, experiment: str) -> Step:
        e, t = self.exp(experiment), self.exp(experiment)["train"]
        lists = {key: self.split_list(experiment, key) for key in L.SPLIT_LISTS}
        settings = {
            **lists,
            **self.review_settings(experiment),
            **self.data_settings(experiment),
            "class_names": self.class_names(experiment),
            **{key: t[key] for key in ("batch_size", "min_labeled", "crop_size", "base_size", "scale_range")},
            "allow_labeled_in_unlabeled": e["data"]["allow_labeled_in_unlabeled"] or None,
        }
        return Step({"lists": self.lists(experiment)}, settings)

    def train_teacher(self, experiment: str) -> Step:
        return Step(
            {"labeled": self.split_list(experiment, "labeled")},
            self.train_settings(experiment, None, self.exp(experiment)["stpp"]["checkpoints"]),
        )

    def copy_teacher(self, experiment: str) -> Step:
        source = self.exp(experiment)["teacher_from"]
        return Step({name: fill(path, experiment=source) for name, path in L.OUTPUTS["train_teacher"].items()})

    def train_student(self, experiment: str, model: str) -> Step:
        pseudo = [path for pair in self.pseudo_sources(experiment, model) for path in pair]
        return Step(
            {"labeled": self.split_list(experiment, "labeled"), "pseudo": pseudo},
            self.train_settings(experiment, model),
        )

    def label_shard(self, experiment: str, model: str, subset: str) -> Step:
        settings = {
            **self.data_settings(experiment, labels=False),
            "num_classes": self.exp(experiment)["data"]["num_classes"],
            **self.tta_settings(experiment),
            "weights": self.exp(experiment)["label"]["weights"],
        }
        return Step(
            {"model": self.path(L.MODEL, experiment, model=model), "images": self.labeling_list(experiment, subset)},
            settings,
        )

    def merge_label_shards(self, experiment: str, model: str, subset: str) -> Step:
        return Step({"shards": self.shard_paths(experiment, L.PSEUDO_MASKS_SHARD, model=model, subset=subset)})

    def score_shard(self, experiment: str) -> Step:
        e = self.exp(experiment)
        settings = {
            **self.data_settings(experiment, labels=False),
            "num_classes": e["data"]["num_classes"],
            # without TTA the scoring stage reads no scale or flip setting
            **(self.tta_settings(experiment) if e["stpp"]["score_tta"] else {"tta": False}),
        }
        inputs = {
            "checkpoints": self.path(L.CHECKPOINTS, experiment),
            "model": self.path(L.MODEL, experiment, model=L.TEACHER),
            "images": self.split_list(experiment, "unlabeled"),
        }
        return Step(inputs, settings)

    def merge_score_shards(self, experiment: str) -> Step:
        shards = self.shard_paths(experiment, L.SCORES_SHARD)
        return Step(
            {
                "scores": [f"{s}.tsv" for s in shards],
                "masks": [f"{s}.h5" for s in shards],
                "images": self.split_list(experiment, "unlabeled"),
            }
        )

    def split_reliable(self, experiment: str) -> Step:
        e = self.exp(experiment)
        selection = e["stpp"]["selection"]
        settings = {"selection": selection}
        if selection != "pixel":  # pixel: every image in both lists
            settings.update(
                ratio=e["stpp"]["reliable_ratio"], seed=e["train"]["seed"] if selection == "random" else None
            )
        return Step({"scores": self.path(L.SCORES, experiment), "images": self.pseudo_list(experiment)}, settings)

    def select_pixels(self, experiment: str, phase: str) -> Step:
        """stpp.selection pixel: the teacher's confident pixels (student 1's masks), or those
        with student 1's relabel of the rest (student 2's)."""
        inputs = {"teacher": self.path(L.PSEUDO_MASKS, experiment, model=L.TEACHER, subset="unlabeled")}
        if phase == "combined":
            inputs["relabel"] = self.path(L.PSEUDO_MASKS, experiment, model="stpp_student1", subset="unreliable")
        return Step(inputs, {"threshold": self.exp(experiment)["stpp"]["pixel_threshold"]})

    def apply_review(self, experiment: str) -> Step:
        settings = {**self.review_settings(experiment), **self.label_settings(experiment)}
        return Step({"images": self.split_list(experiment, "unlabeled")}, settings)

    def review_sheet(self, experiment: str) -> Step:
        inputs = {
            "images": self.split_list(experiment, "unlabeled"),
            "teacher_masks": self.path(L.PSEUDO_MASKS, experiment, model=L.TEACHER, subset="unlabeled"),
            "scores": self.path(L.SCORES, experiment),
            "reliable": self.path(L.RELIABLE, experiment),
            "audit": self.path(L.AUDIT_JSON, experiment),
            # corrected images are reliable: every student trains on them as on reliable ones
            **dict(("corrected", source) for source, _ in self.corrections_source(experiment)),
        }
        size = self.exp(experiment)["review"]["sheet_size"]
        return Step(inputs, {**self.figure_settings(experiment), "size": size})

    def evaluate(self, experiment: str, model: str, split: str = "val") -> Step:
        settings = {
            **self.data_settings(experiment),
            "class_names": self.class_names(experiment),
            **self.exp(experiment)["evaluate"],
        }
        return Step(
            {"model": self.path(L.MODEL, experiment, model=model), "images": self.split_list(experiment, split)},
            settings,
        )

    def evaluate_test(self, experiment: str, model: str) -> Step:
        return self.evaluate(experiment, model, "test")

    def predict(self, experiment: str, model: str) -> Step:
        """New images (predict.images) segmented by one model: its masks, colours and overlays."""
        e = self.exp(experiment)
        images = e["predict"]["images"]
        if images and images.endswith(".txt"):  # a split list: its paths are the data's
            where = {"images": os.path.join(e["data"]["root"], images), "data_root": e["data"]["root"]}
        else:
            where = {"images": images}
        settings = {
            **where,
            "num_classes": e["data"]["num_classes"],
            "class_names": self.class_names(experiment),
            "palette": e["data"]["palette"],
            **e["evaluate"],
        }
        return Step({"model": self.path(L.MODEL, experiment, model=model)}, settings)

    def summarize(self, experiment: str) -> Step:
        return Step({"metrics": self.summary_inputs(experiment)})

    def audit(self, experiment: str) -> Step:
        """What the audit measures: the pseudo-masks, the scores, split and relabels of ST++, and
        what a review excluded and corrected."""
        inputs = {
            "images": self.split_list(experiment, "unlabeled"),
            **self.pseudo_label_artifacts(experiment, "scores", "reliable", "unreliable", "relabeled"),
            **self.review_artifacts(experiment),
        }
        settings = {
            **self.data_settings(experiment),
            "class_names": self.class_names(experiment),
            "pixel_threshold": self.exp(experiment)["stpp"]["pixel_threshold"],
        }
        return Step(inputs, settings)

    def figure_scores(self, experiment: str) -> Step:
        return Step(
            {
                "scores": self.path(L.SCORES, experiment),
                "reliable": self.path(L.RELIABLE, experiment),
                "per_image": self.path(L.AUDIT_TSV, experiment),
            }
        )

    def figure_contact_sheet(self, experiment: str, selection: str) -> Step:
        """What a contact sheet shows besides the images: the teacher's masks and, with ST++, the
        checkpoints' masks, the scores that order the rows and student 1's relabels."""
        inputs = {
            "images": self.split_list(experiment, "unlabeled"),
            **self.pseudo_label_artifacts(experiment, "checkpoint_masks", "scores", "relabeled"),
        }
        return Step(inputs, {**self.figure_settings(experiment), "select": selection})

    def figure_training_curves(self, experiment: str) -> Step:
        return Step({"logs": [self.path(L.TRAIN_LOG, experiment, model=m) for _, m in self.method_models(experiment)]})

    def figure_summary(self, experiment: str) -> Step:
        return Step({"summary": self.path(L.SUMMARY, experiment)})

    # -- settings several steps share -----------------------------------------------------------

    def data_settings(self, experiment: str, labels: bool = True) -> dict:
        root = {"data_root": self.exp(experiment)["data"]["root"]}
        return {**root, **self.label_settings(experiment)} if labels else root

    def label_settings(self, experiment: str) -> dict:
        """How a stage reads a mask's stored values: classes, ignored values, the label map."""
        data = self.exp(experiment)["data"]
        return {
            "num_classes": data["num_classes"],
            "ignore_labels": data["ignore_labels"],
            "label_map": label_map_args(data.get("label_map")),
            "mask_colors": data.get("mask_colors"),
        }

    def figure_settings(self, experiment: str) -> dict:
        palette = self.exp(experiment)["data"]["palette"]
        return {**self.data_settings(experiment), "class_names": self.class_names(experiment), "palette": palette}

    def tta_settings(self, experiment: str) -> dict:
        label = self.exp(experiment)["label"]
        return {
            "tta": True,
            "scales": label["scales"],
            "flip": label["flip"],
            "resize_logits": label["resize_logits"],
            "tta_geometry": label["tta_geometry"],
        }

    def review_settings(self, experiment: str) -> dict:
        """The review's two keys as the data check and stages.review both take them."""
        review = self.exp(experiment)["review"]
        return {"review_exclude": review["exclude"], "review_masks": review["masks"]}

    def train_settings(self, experiment: str, student: str | None, checkpoints: int = 1) -> dict:
        """A training job's settings: everything that changes the model."""
        e = self.exp(experiment)
        m, t = e["model"], e["train"]
        return {
            **self.data_settings(experiment),
            **{key: m[key] for key in ("arch", "backbone", "output_stride", "pretrained", "head_channels")},
            "factory": m.get("factory") if m["arch"] == "custom" else None,
            "model_kwargs": json.dumps(m.get("kwargs") or {}, sort_keys=True) if m["arch"] == "custom" else None,
            **{key: t[key] for key in ("lr", "head_lr_multiplier", "momentum", "weight_decay", "poly_power")},
            **{key: t[key] for key in ("seed", "batch_size", "amp", "crop_size", "base_size", "scale_range")},
            "epochs": self.train_epochs(experiment, student),
            "checkpoints": checkpoints,
            "model_name": self.model_name(experiment, student),
            "teacher_epochs": self.teacher_epochs(experiment, student),
            **self.strong_settings(experiment, student),
            "min_labeled": t["min_labeled"],
            "val": self.split_list(experiment, "val") if t["val_every"] else None,
            "eval_every": t["val_every"] or None,
            "sync_bn": t["sync_bn"] if t["gpus"] > 1 else None,
        }

    def strong_settings(self, experiment: str, student: str | None) -> dict:
        """A student's strong augmentation: on which images, which ones. The teacher has none
        (no pseudo-labels), so these settings are no part of its step."""
        t = self.exp(experiment)["train"]
        on = {True: "pseudo_labeled", False: "none"}.get(t["strong_augmentation"], t["strong_augmentation"])
        if student is None:
            return {}
        return {
            "strong": on,
            "strong_ops": [op for op in STRONG_OPS if op in t["strong_ops"]] if on != "none" else None,
            "labeled_cutout": (t["labeled_cutout"] and on != "all") or None,
        }

    # -- checks the schema cannot make ----------------------------------------------------------

    def check(self) -> None:
        """Raise ValueError naming, one line each, every setting that cannot work (its key)."""
        problems = []
        for name, e in self.config["experiments"].items():
            for check in (
                self._check_settings,
                self._check_label_map,
                self._check_teacher_from,
                self._check_reliable_ratio,
            ):
                try:
                    check(name, e)
                except ValueError as err:
                    problems.append(str(err))
        if problems:
            raise ValueError("\n".join(problems))

    @staticmethod
    def _check_settings(name: str, e: dict) -> None:
        problems = []
        names = e["data"].get("class_names")
        if names is not None and len(names) != e["data"]["num_classes"]:
            problems.append(
                f"config: experiments.{name}.data.class_names has {len(names)} names "
                f"for num_classes {e['data']['num_classes']}"
            )
        if e["label"]["weights"] == "best" and e["train"]["val_every"] == 0:
            problems.append(
                f"config: experiments.{name}.label.weights is 'best' but train.val_every is 0; "
                "set val_every > 0 so training keeps best-on-validation weights"
            )
        if e["stpp"]["checkpoints"] > e["train"]["epochs"]:
            problems.append(f"config: experiments.{name}.stpp.checkpoints exceeds train.epochs")
        if e["model"]["arch"] == "custom" and not e["model"].get("factory"):
            problems.append(
                f"config: experiments.{name}.model.arch is custom but model.factory is not set; set it to the "
                "function that builds your network (package.module:function or path/file.py:function)"
            )
        if problems:
            raise ValueError("\n".join(problems))

    @staticmethod
    def _check_label_map(name: str, e: dict) -> None:
        """Each class a label map names exists; no stored value is both mapped and ignored."""
        data = e["data"]
        colours = data.get("mask_colors")
        if colours and colours not in BUILT_IN_PALETTES and not os.path.isfile(colours):
            raise ValueError(
                f"config: experiments.{name}.data.mask_colors {colours!r} is neither one of "
                f"{', '.join(BUILT_IN_PALETTES)} nor a file of 'R G B' lines"
            )
        label_map = data.get("label_map")
        if not isinstance(label_map, dict):
            return
        where = f"config: experiments.{name}.data.label_map"
        for stored, target in label_map.items():
            if not str(stored).isdigit():
                raise ValueError(f"{where} maps {stored!r}: a stored mask value is a whole number (e.g. 255: 1)")
            if target != "ignore" and not 0 <= target < data["num_classes"]:
                raise ValueError(
                    f"{where} maps {stored} to class {target}, outside [0, {data['num_classes']}) "
                    "(data.num_classes); map it to a class, or to ignore"
                )
            if int(stored) in data["ignore_labels"]:
                raise ValueError(
                    f"{where} maps {stored}, which data.ignore_labels also ignores; keep it in one of the two"
                )

    def _check_predict(self, name: str, e: dict) -> None:
        """predict.models names methods this experiment trains."""
        trained = [method for method, _ in self.method_models(name)]
        missing = [m for m in e["predict"]["models"] or [] if m not in trained]
        if missing:
            raise ValueError(
                f"config: experiments.{name}.predict.models names {', '.join(missing)}, which this experiment "
                f"does not train (its methods: {', '.join(trained)}); name one of those"
            )

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
        if e["teacher_from"] is None:
            return
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
        differ = self._teacher_differences(e, experiments[source])
        if differ:
            raise ValueError(
                f"{where}: {', '.join(differ)} differ from {source!r}'s and would change the teacher; "
                "make them equal, or remove teacher_from"
            )

    def _teacher_key(self, e: dict):
        """The copy key of a teacher trained under experiment settings ``e``."""
        trial = Plan({**self.config, "experiments": {"_": e}})
        return trial.copy_key("_", fill(L.OUTPUTS["train_teacher"]["model"], experiment="_"))

    def _teacher_differences(self, ours: dict, theirs: dict) -> list[str]:
        """The config keys (dotted) whose value in ``ours`` alone would change the teacher of
        ``theirs``: found by trying each differing key, so that they follow from train_teacher's
        step and nothing else."""
        base, a, b = self._teacher_key(theirs), flat(ours), flat(theirs)
        differ = []
        for key in sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)):
            trial, (*parents, leaf) = copy.deepcopy(theirs), key.split(".")
            node = trial
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = a.get(key)
            if self._teacher_key(trial) != base:
                differ.append(key)
        if not differ and self._teacher_key(ours) != base:
            differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))  # only together
        return differ

    def own_teacher(self) -> list[str]:
        """The experiments that train their teacher (rule train_teacher); the rest copy one."""
        return [n for n in self.experiments if self.exp(n)["teacher_from"] is None]

    def borrowed_teacher(self) -> list[str]:
        return [n for n in self.experiments if self.exp(n)["teacher_from"] is not None]

    # -- what an experiment with teacher_from copies instead of computing -------------------------

    def copy_key(self, experiment: str, path: str):
        """A value equal for two experiments exactly where their file ``path`` is the same file:
        the rule that writes it, that job's settings, and the keys of what it reads, recursively
        up to the data lists (compared by path); None where it cannot be copied. A shard's index
        is no part of it, so that labeling split into any number of shards gives one key."""
        rel = path.removeprefix(self.path(L.EXPERIMENT, experiment) + "/")
        if rel == path:
            return ("file", path)  # a data list, a review file: outside the experiment's folder
        if (experiment, rel) not in self._keys:
            found = producer(path)
            if found is None:
                raise ValueError(f"no rule writes {path}")
            rule, wildcards = found
            step = self.step(rule, **wildcards)
            inputs = [self.copy_key(experiment, p) for p in step.files()]
            copyable = rule != "apply_review" and None not in inputs
            self._keys[experiment, rel] = (rule, step.args, tuple(dict.fromkeys(inputs))) if copyable else None
        return self._keys[experiment, rel]

    def targets(self, experiment: str) -> list[str]:
        """What rule all makes of an experiment (its data check aside)."""
        mine = f"{self.path(L.EXPERIMENT, experiment)}/"
        every = [self.path(L.SUMMARY, experiment), *self.audit_targets(), *self.test_targets(), *self.predict_targets()]
        return [path for path in every if path.startswith(mine)]

    def files(self, experiment: str, targets: list[str]) -> dict[str, tuple[str, dict]]:
        """{file: (rule, wildcards)} of the targets and every file of the experiment's folder that
        they are computed from, through each step's inputs."""
        out, todo, mine = {}, list(targets), f"{self.path(L.EXPERIMENT, experiment)}/"
        while todo:
            path = todo.pop()
            found = producer(path) if path.startswith(mine) else None
            if found and path not in out:
                out[path] = found
                todo += self.step(found[0], **found[1]).files()
        return out

    def made(self, experiment: str) -> dict[str, tuple[str, dict]]:
        """files() of the students: everything an experiment computes to train them, up to the teacher."""
        models = [m for _, m in self.method_models(experiment) if m != L.TEACHER]
        return self.files(experiment, [self.path(L.MODEL, experiment, model=m) for m in models])

    def copied_files(self, experiment: str) -> dict[str, str]:
        """{file of this experiment: the same file of its teacher_from experiment} for every file
        that both plans compute with equal copy keys, all the way up to the shared teacher: the
        teacher's pseudo-masks and scores, the split, students and relabels. Training and
        labeling are deterministic, so the copy is the file this experiment would write; an
        ablation of student 2 then trains student 2 alone, one of stpp.rounds: 3 only the third
        round, one of score_tta everything after the scoring. Every output of a copied job is
        copied with it (a student's model.pt and train_log.tsv, the two scoring files, the two
        split lists)."""
        source = self.exp(experiment)["teacher_from"]
        if source is None:
            return {}
        theirs = {path.replace(f"results/{source}/", "", 1) for path in self.made(source)}
        out = {}
        for path, (rule, wildcards) in sorted(self.made(experiment).items()):
            rel = path.replace(f"results/{experiment}/", "", 1)
            if rule in NEVER_COPIED or rel not in theirs:
                continue
            if self.copy_key(experiment, path) != self.copy_key(source, f"results/{source}/{rel}"):
                continue
            for pattern in L.OUTPUTS[rule].values():
                twin = fill(pattern, **wildcards)
                out[twin] = twin.replace(f"results/{experiment}/", f"results/{source}/", 1)
        return out

    def copied(self) -> dict[str, str]:
        """copied_files of every experiment, in one dict."""
        return {k: v for name in self.experiments for k, v in self.copied_files(name).items()}

    # -- paths and data ----------------------------------------------------------------------------

    @staticmethod
    def path(pattern: str, experiment: str, **wildcards) -> str:
        return fill(pattern, experiment=experiment, **wildcards)

    def split_list(self, experiment: str, key: str) -> str | None:
        """Path of one of an experiment's split lists (relative to data.lists_dir, by default the
        data root, unless absolute); None for a test list the experiment does not have."""
        data = self.exp(experiment)["data"]
        if data.get(key) is None:
            return None
        return os.path.join(data.get("lists_dir") or data["root"], data[key])

    def lists(self, experiment: str) -> list[str]:
        """The split lists of an experiment (the data check's inputs)."""
        return [p for p in (self.split_list(experiment, key) for key in L.SPLIT_LISTS) if p]

    def data_stamp(self, experiment: str, lists: list[str]) -> str:
        """A fingerprint of every image and mask that ``lists`` name and of the review's files:
        path, size and modification time, or that the file is missing (the data check then
        names it with its list line)."""
        root = self.exp(experiment)["data"]["root"]
        files = [
            os.path.join(root, p) for path in lists for s in parse_split_list(path)[0] for p in (s.image, s.mask) if p
        ]
        return files_stamp(files + self.review_files(experiment))

    def has_test(self, experiment: str) -> bool:
        return self.exp(experiment)["data"]["test"] is not None

    def class_names(self, experiment: str) -> list[str]:
        data = self.exp(experiment)["data"]
        return data.get("class_names") or [str(c) for c in range(data["num_classes"])]

    # -- review (exclusions and corrected masks) ---------------------------------------------------

    def reviewed(self, experiment: str) -> bool:
        """Whether the experiment has a review: review.exclude or review.masks. Without, the
        plan is the plain workflow's: no apply_review job, every student reads the lists as is."""
        review = self.exp(experiment)["review"]
        return bool(review["exclude"] or review["masks"])

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
        out = {name: fill(p, experiment=experiment) for name, p in L.OUTPUTS["apply_review"].items()}
        return {"kept": out["kept"], "corrected": out["corrected"], "corrected_masks": out["masks"]}

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

    # -- methods ------------------------------------------------------------------------------------

    def rounds(self, experiment: str) -> int:
        """ST++'s rounds for an experiment: its stpp.rounds, else the config's rounds."""
        return self.exp(experiment)["stpp"]["rounds"] or self.config["rounds"]

    def method_models(self, experiment: str) -> list[tuple[str, str]]:
        """Rows of the summary: (method name, trained model) in the configured order."""
        return L.method_models(self.config["methods"], self.rounds(experiment))

    def summary_inputs(self, experiment: str) -> list[str]:
        return [self.path(L.METRICS, experiment, model=model) for _, model in self.method_models(experiment)]

    def summary_args(self, experiment: str) -> str:
        """NAME=metrics.json per method, as stages.summarize takes them."""
        names = [name for name, _ in self.method_models(experiment)]
        return shlex.join(f"{n}={p}" for n, p in zip(names, self.summary_inputs(experiment), strict=True))

    def curves_args(self, experiment: str) -> str:
        """MODEL=train_log.tsv per method, as stages.figures curves takes them."""
        logs = self.figure_training_curves(experiment).inputs["logs"]
        return shlex.join(f"{m}={p}" for (_, m), p in zip(self.method_models(experiment), logs, strict=True))

    def predicting_models(self, experiment: str) -> list[str]:
        """The models that segment predict.images: predict.models' methods, by default the last
        method of the summary (ST++ final, else ST, else SupOnly); [] without predict.images."""
        predict, rows = self.exp(experiment)["predict"], dict(self.method_models(experiment))
        if not predict["images"]:
            return []
        methods = predict["models"] or [self.method_models(experiment)[-1][0]]
        return [rows[m] for m in methods if m in rows]

    def predict_targets(self) -> list[str]:
        return [self.path(L.PREDICTIONS, e, model=m) for e in self.experiments for m in self.predicting_models(e)]

    def images_stamp(self, experiment: str) -> str:
        """A fingerprint of predict.images' files (path, size, time), so that a new, changed or
        removed image re-runs the predictions as an input file would."""
        step = self.predict(experiment, L.TEACHER)
        images = step.settings["images"]
        if not images:
            return ""
        if images.endswith(".txt"):
            files = [os.path.join(step.settings["data_root"], s.image) for s in parse_split_list(images)[0]]
            files.append(images)
        else:
            files = sorted(str(p) for p in Path(images).rglob("*") if p.is_file())
        return files_stamp(files)

    def test_targets(self) -> list[str]:
        """Every trained model's evaluation on data.test, for the experiments that have one."""
        return [
            self.path(L.TEST_METRICS, name, model=model)
            for name in self.experiments
            if self.has_test(name)
            for _, model in self.method_models(name)
        ]

    def audit_targets(self) -> list[str]:
        """The audit, its figures and the charts of every experiment (the audit where
        pseudo-masks exist), and with ST++ the review sheet."""
        methods = set(self.config["methods"])
        patterns = [L.FIGURE_CURVES, L.FIGURE_SUMMARY]
        if methods & {"ST", "ST++"}:
            selections = L.SELECTIONS if "ST++" in methods else ["random"]
            patterns += [L.AUDIT_JSON, *(fill(L.FIGURE_CONTACT, selection=s) for s in selections)]
        if "ST++" in methods:
            patterns.append(L.FIGURE_SCORES)
        sheets = [L.REVIEW_SHEET] if "ST++" in methods else []
        return [self.path(p, e) for e in self.experiments for p in patterns] + [
            self.path(p, e) for e in self.experiments for p in sheets
        ]

    # -- training -----------------------------------------------------------------------------------

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
        return student or L.TEACHER

    def teacher_epochs(self, experiment: str, student: str | None) -> int | None:
        """For a student under stpp.student_schedule: labeled_passes, the teacher's epochs, from
        which the trainer sets the student's (stages.train.schedule_epochs); None for the
        teacher and under the paper's equal-epochs rule."""
        e = self.exp(experiment)
        if student and e["stpp"]["student_schedule"] == "labeled_passes":
            return e["train"]["epochs"]
        return None

    def runtime_args(self, threads: int, batch_size: int | None = None, workers: int = 0, training=False) -> str:
        """Device, threads, batch and the config's speed switches (those of training or of inference)."""
        s = self.config["speed"]
        channels_last = {True: "on", False: "off"}.get(s["channels_last"], s["channels_last"])  # YAML true / false
        switches = dict(
            channels_last=channels_last,
            cudnn_benchmark=s["cudnn_benchmark"],
            prefetch_factor=s["prefetch_factor"],
            adapt_threads=s["adapt_threads"],
        )
        if training:
            switches.update(compile=s["compile"])
        else:
            switches.update(fold_batch_norm=s["fold_batch_norm"], amp=s["inference_amp"])
        return cli_args(
            device=self.config["device"], threads=threads, batch_size=batch_size, workers=workers, **switches
        )

    def inference_runtime_args(self, experiment: str, threads: int) -> str:
        """How a labeling or scoring job runs: its label.batch_size is how, not what."""
        return self.runtime_args(threads, self.exp(experiment)["label"]["batch_size"])

    def train_runtime_args(self, experiment: str, threads: int) -> str:
        """How a training job runs, not what it learns (changing it re-trains nothing); with
        several processes (train.gpus) the job's threads are shared among them."""
        t = self.exp(experiment)["train"]
        return " ".join(
            [
                self.runtime_args(max(1, threads // t["gpus"]), workers=t["workers"], training=True),
                # recorded in the checkpoints for their users: renaming a class re-trains nothing
                cli_args(
                    save_every_minutes=t["save_every_minutes"],
                    class_names=self.class_names(experiment),
                    palette=self.exp(experiment)["data"]["palette"],
                ),
            ]
        )

    def trainer(self, experiment: str) -> str:
        """The training command: one process, or train.gpus processes under torchrun (DDP)."""
        gpus = self.exp(experiment)["train"]["gpus"]
        if gpus == 1:
            return "python -m stages.train"
        return f"python -m torch.distributed.run --standalone --nproc-per-node {gpus} --module stages.train"

    # -- pseudo-labels --------------------------------------------------------------------------------

    def teacher_checkpoints(self, experiment: str) -> list[str]:
        """Checkpoints 1..K of the teacher, the final model last."""
        k = self.exp(experiment)["stpp"]["checkpoints"]
        teacher = self.path(L.MODEL_DIR, experiment, model=L.TEACHER)
        return [*(f"{teacher}/{L.checkpoint_file(j)}" for j in range(1, k)), f"{teacher}/{L.MODEL_FILE}"]

    def labeling_list(self, experiment: str, subset: str) -> str:
        if subset == "unreliable":
            return self.path(L.UNRELIABLE, experiment)
        return self.split_list(experiment, "unlabeled")

    def shard_paths(self, experiment: str, pattern: str, **wildcards) -> list[str]:
        """A layout pattern's shard files, one per label.shards."""
        n = self.exp(experiment)["label"]["shards"]
        return [self.path(pattern, experiment, shard=i, shards=n, **wildcards) for i in range(n)]

    def pseudo_sources(self, experiment: str, student: str) -> list[tuple[str, str]]:
        """(split list, mask store) pairs a student trains on, by the ST / ST++ recipe."""
        masks = {
            m: self.path(L.PSEUDO_MASKS, experiment, model=m, subset=s)
            for m, s in ((L.TEACHER, "unlabeled"), ("stpp_student1", "unreliable"), ("stpp_student2", "unlabeled"))
        }
        unlabeled = self.pseudo_list(experiment)
        reliable = (self.path(L.RELIABLE, experiment), masks[L.TEACHER])
        sources = {
            "st_student": [(unlabeled, masks[L.TEACHER])],
            "stpp_student1": [reliable],
            "stpp_student2": [reliable, (self.path(L.UNRELIABLE, experiment), masks["stpp_student1"])],
            "stpp_student3": [(unlabeled, masks["stpp_student2"])],
        }[student]
        if self.exp(experiment)["stpp"]["selection"] == "pixel" and student in ("stpp_student1", "stpp_student2"):
            # every image, with its confident pixels (student 1) or those and the relabeled rest
            phase = "confident" if student == "stpp_student1" else "combined"
            sources = [(self.path(L.RELIABLE, experiment), self.path(L.PIXEL_MASKS, experiment, phase=phase))]
        return sources + self.corrections_source(experiment)  # a corrected image: reliable, never relabeled

    def pseudo_label_artifacts(self, experiment: str, *stpp_keys: str) -> dict[str, str]:
        """The teacher's pseudo-masks and, when ST++ runs, the named ST++ outputs, as stage options."""
        stpp = {
            "scores": self.path(L.SCORES, experiment),
            "reliable": self.path(L.RELIABLE, experiment),
            "unreliable": self.path(L.UNRELIABLE, experiment),
            "checkpoint_masks": self.path(L.CHECKPOINT_MASKS, experiment),
            "relabeled": self.path(L.PSEUDO_MASKS, experiment, model="stpp_student1", subset="unreliable"),
        }
        inputs = {"teacher_masks": self.path(L.PSEUDO_MASKS, experiment, model=L.TEACHER, subset="unlabeled")}
        if "ST++" in self.config["methods"]:
            inputs.update({key: stpp[key] for key in stpp_keys})
        return inputs
