# Helpers shared by the rules: config lookups and the command-line arguments of each stage.
import hashlib
import os
import re
import shlex
import sys

# `python` in the rules' commands is the interpreter that runs Snakemake (so a venv need not be
# activated), unless a software deployment method (conda: envs/stpp.yaml) provides its own.
if not workflow.deployment_settings.deployment_method:
    shell.prefix(f'set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; ')

# The stages' own list reader (free of torch) names the check_data job's inputs.
sys.path.insert(0, workflow.basedir)
from stages.seg.splits import parse_split_list

EXPERIMENTS = list(config["experiments"])


def _one_of(names):
    """A wildcard regex matching exactly these names (none: a regex that matches nothing)."""
    return "|".join(map(re.escape, names)) or "(?!)"


SPLIT_LISTS = ("labeled", "unlabeled", "val", "test")  # test: optional (data.test)
STUDENTS = ["st_student", "stpp_student1", "stpp_student2", "stpp_student3"]


wildcard_constraints:
    experiment=_one_of(EXPERIMENTS),
    student="|".join(STUDENTS),
    model="|".join(["teacher", *STUDENTS]),
    subset="unlabeled|unreliable",
    shard=r"\d+",
    shards=r"\d+",
    selection="most_stable|least_stable|random",


def _check_experiments():
    for name, e in config["experiments"].items():
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
            _check_teacher_from(name, e)


def teacher_settings(e):
    """What a teacher depends on: its data, model, schedule and K checkpoints (not the students'
    settings, labeling or scoring)."""
    d = e["data"]
    data = {key: d[key] for key in ("root", "labeled", "num_classes", "ignore_labels")}
    if e["train"]["val_every"]:
        data["val"] = d["val"]
    # how many DataLoader workers and how often the resume state is saved change no weight
    train = {k: v for k, v in e["train"].items() if k not in ("workers", "save_every_minutes")}
    return {"data": data, "model": e["model"], "train": train, "stpp.checkpoints": e["stpp"]["checkpoints"]}


def _flat(tree, prefix=""):
    """{dotted key: value} of a nested dict."""
    out = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
    return out


def _check_teacher_from(name, e):
    source = e["teacher_from"]
    where = f"config: experiments.{name}.teacher_from"
    if source not in config["experiments"]:
        raise ValueError(
            f"{where} names {source!r}, which is not an experiment of this config; add it, or remove "
            "teacher_from to train this experiment's own teacher"
        )
    if config["experiments"][source]["teacher_from"] is not None:
        raise ValueError(
            f"{where}: {source!r} itself takes its teacher from "
            f"{config['experiments'][source]['teacher_from']!r}; name that experiment instead"
        )
    ours, theirs = _flat(teacher_settings(e)), _flat(teacher_settings(config["experiments"][source]))
    differ = sorted(key for key in ours.keys() | theirs.keys() if ours.get(key) != theirs.get(key))
    if differ:
        raise ValueError(
            f"{where}: {', '.join(differ)} differ from {source!r}'s and would change the teacher; "
            "make them equal, or remove teacher_from"
        )


_check_experiments()


# Which experiments train their teacher and which copy another's (rules train_teacher, copy_teacher).
OWN_TEACHER = _one_of(n for n, e in config["experiments"].items() if e["teacher_from"] is None)
BORROWED_TEACHER = _one_of(n for n, e in config["experiments"].items() if e["teacher_from"] is not None)


def exp(wildcards):
    return config["experiments"][wildcards.experiment]


def split_list(experiment, key):
    """Path of one of an experiment's split lists (relative to its data root unless absolute);
    None for a test list the experiment does not have."""
    data = config["experiments"][experiment]["data"]
    if data.get(key) is None:
        return None
    return os.path.join(data["root"], data[key])


def has_test(experiment):
    return config["experiments"][experiment]["data"]["test"] is not None


def data_lists(wildcards):
    """The split lists of an experiment (the data check's inputs)."""
    lists = [split_list(wildcards.experiment, key) for key in SPLIT_LISTS if split_list(wildcards.experiment, key)]
    if set(lists) & set(rules.make_demo.output):
        checkpoints.make_demo.get()  # the lists do not exist until make_demo has run
    return lists


def data_stamp(wildcards):
    """A fingerprint of every image and mask the lists name: path, size and modification time,
    or that the file is missing (the check then names it with its list line).

    A param of the data check, so that an edited, added, removed or touched file re-runs the
    check (Snakemake re-runs a job whose params changed) as an input file would, without
    Snakemake resolving each file as an input: at Pascal VOC's size (24,062 files) that took 5
    of the 8 seconds of `snakemake -n`. The check's digests then decide what else re-runs."""
    root = exp(wildcards)["data"]["root"]
    stamp = hashlib.sha256()
    for path in data_lists(wildcards):
        samples, _ = parse_split_list(path)
        for f in (os.path.join(root, p) for s in samples for p in (s.image, s.mask) if p):
            try:
                st = os.stat(f)
                stamp.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            except OSError:
                stamp.update(f"{f}\0missing\n".encode())
    return stamp.hexdigest()


def checked_digests(*keys, val_if_validating=False, wait_only=False):
    """Input function: the data check's digests of the lists a job reads.

    Through the checkpoint, so that the job waits for the check and, when the check re-runs,
    re-runs only if a digest of its own lists changed (Snakemake compares input checksums).
    Every job downstream of the check takes one: Snakemake re-decides after a checkpoint only
    for the jobs that depend on it directly, and would re-run the others for the check alone.
    ``wait_only``: the job waits for the check but a changed digest alone does not re-run it
    (for jobs with temp() outputs, whose recorded checksums go with the deleted files)."""

    def digests(wildcards):
        check = checkpoints.check_data.get(experiment=wildcards.experiment).output
        names = list(keys)
        if val_if_validating and exp(wildcards)["train"]["val_every"]:
            names.append("val")
        return [ancient(getattr(check, name)) if wait_only else getattr(check, name) for name in names]

    return digests


def resources_of(kind):
    return config["resources"][kind]


def job_resources(kind):
    """A rule's resources from the config's ``resources: <kind>`` block: memory, GPUs (a GPU
    model and CPUs per GPU where set; none asked for with gpu: 0) and a runtime that grows with
    each attempt, so that a job retried after hitting its time limit gets more time."""
    r = resources_of(kind)
    out = {"mem_mb": r["mem_mb"], "runtime": lambda wildcards, attempt: r["runtime"] * attempt, "gpu": r["gpu"]}
    out.update({key: r[key] for key in ("gpu_model", "cpus_per_gpu") if key in r})
    return out


def rounds(experiment):
    """ST++'s rounds for an experiment: its stpp.rounds, else the config's rounds."""
    return config["experiments"][experiment]["stpp"]["rounds"] or config["rounds"]


def method_models(experiment):
    """Rows of the summary: (method name, trained model) in the configured order."""
    n = rounds(experiment)
    rows = []
    if "SupOnly" in config["methods"]:
        rows.append(("SupOnly", "teacher"))
    if "ST" in config["methods"]:
        rows.append(("ST", "st_student"))
    if "ST++" in config["methods"]:
        rows.append(("ST++ student 1", "stpp_student1"))
        if n == 3:
            rows.append(("ST++ student 2", "stpp_student2"))
        rows.append(("ST++ final", f"stpp_student{n}"))
    return rows


def _args(**options):
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


def data_args(wildcards, labels=True):
    data = exp(wildcards)["data"]
    if not labels:
        return _args(data_root=data["root"])
    return _args(data_root=data["root"], num_classes=data["num_classes"], ignore_labels=data["ignore_labels"])


def runtime_args(threads, batch_size=None, workers=0, training=False):
    """Device, threads, batch and the config's speed switches (those of training or of inference)."""
    s = config["speed"]
    channels_last = {True: "on", False: "off"}.get(s["channels_last"], s["channels_last"])  # YAML true / false
    switches = dict(
        channels_last=channels_last, cudnn_benchmark=s["cudnn_benchmark"], prefetch_factor=s["prefetch_factor"]
    )
    if training:
        switches.update(compile=s["compile"])
    else:
        switches.update(fold_batch_norm=s["fold_batch_norm"], amp=s["inference_amp"])
    return _args(device=config["device"], threads=threads, batch_size=batch_size, workers=workers, **switches)


def train_epochs(wildcards):
    """train.epochs, but for ST++ student 1 where stpp.student1_epochs is set: it sees only the
    reliable pseudo-labels, so the paper's equal epochs give it about R times ST's iterations."""
    e = exp(wildcards)
    if getattr(wildcards, "student", None) == "stpp_student1" and e["stpp"]["student1_epochs"]:
        return e["stpp"]["student1_epochs"]
    return e["train"]["epochs"]


def model_name(wildcards):
    """The trained model's name (teacher, st_student, stpp_student1, ...), which seeds its random
    initialisation under train.init: per_model; None under train.init: shared."""
    if exp(wildcards)["train"]["init"] == "shared":
        return None
    return getattr(wildcards, "student", None) or "teacher"


def teacher_epochs(wildcards):
    """For a student under stpp.student_schedule: labeled_passes, the teacher's epochs, from
    which the trainer sets the student's (see stages.train.schedule_epochs); None for the
    teacher and under the paper's equal-epochs rule."""
    e = exp(wildcards)
    if getattr(wildcards, "student", None) and e["stpp"]["student_schedule"] == "labeled_passes":
        return e["train"]["epochs"]
    return None


def train_args(wildcards, checkpoints=1):
    """A training job's settings: everything that changes the model. They are a params function
    of wildcards alone, because Snakemake's params rerun trigger skips ("derived") params functions
    that take threads, input or output; a changed setting must re-train."""
    e = exp(wildcards)
    m, t = e["model"], e["train"]
    val = split_list(wildcards.experiment, "val") if t["val_every"] else None
    return " ".join(
        [
            data_args(wildcards),
            _args(
                arch=m["arch"],
                backbone=m["backbone"],
                output_stride=m["output_stride"],
                pretrained=m["pretrained"],
                head_channels=m["head_channels"],
            ),
            _args(
                epochs=train_epochs(wildcards),
                lr=t["lr"],
                head_lr_multiplier=t["head_lr_multiplier"],
                momentum=t["momentum"],
                weight_decay=t["weight_decay"],
                poly_power=t["poly_power"],
                checkpoints=checkpoints,
                seed=t["seed"],
                model_name=model_name(wildcards),
                teacher_epochs=teacher_epochs(wildcards),
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
            ),
        ]
    )


def train_runtime_args(wildcards, threads):
    """A training job's device, threads, workers, speed switches and how often it saves its
    resume state: how it runs, not what it learns, so changing them re-trains nothing. With
    several processes (train.gpus) the job's threads are shared among them."""
    t = exp(wildcards)["train"]
    return " ".join(
        [
            runtime_args(max(1, threads // t["gpus"]), workers=t["workers"], training=True),
            _args(save_every_minutes=t["save_every_minutes"]),
        ]
    )


def trainer(wildcards):
    """The training command: one process, or train.gpus processes under torchrun (DDP)."""
    gpus = exp(wildcards)["train"]["gpus"]
    if gpus == 1:
        return "python -m stages.train"
    return f"python -m torch.distributed.run --standalone --nproc-per-node {gpus} --module stages.train"


def train_resources():
    """A training job's resources: as job_resources("train"), with train.gpus GPUs where that
    experiment trains on several."""
    out = job_resources("train")
    base = out["gpu"]
    out["gpu"] = lambda wildcards: exp(wildcards)["train"]["gpus"] if exp(wildcards)["train"]["gpus"] > 1 else base
    return out


def tta_args(wildcards, tta=True):
    label = exp(wildcards)["label"]
    return _args(tta=tta, scales=label["scales"], flip=label["flip"], resize_logits=label["resize_logits"])


def teacher_checkpoints(wildcards):
    """Checkpoints 1..K of the teacher, the final model last."""
    k = exp(wildcards)["stpp"]["checkpoints"]
    base = f"results/{wildcards.experiment}/teacher"
    return [*(f"{base}/checkpoints/checkpoint_{j}.pt" for j in range(1, k)), f"{base}/model.pt"]


def labeling_weights(wildcards):
    """The weights that label: the final model, or best.pt that the same training job wrote.
    A function of wildcards alone (not of input), so that switching label.weights re-labels:
    Snakemake's params rerun trigger skips params functions that take input."""
    name = "best.pt" if exp(wildcards)["label"]["weights"] == "best" else "model.pt"
    return f"results/{wildcards.experiment}/{wildcards.model}/{name}"


def labeling_list(wildcards):
    if wildcards.subset == "unreliable":
        return f"results/{wildcards.experiment}/stpp_split/unreliable_ids.txt"
    return split_list(wildcards.experiment, "unlabeled")


def shard_files(wildcards, folder, suffix):
    """``folder``'s shard files shard_<i>_of_<n><suffix>, one per label.shards (no suffix: their
    paths without one)."""
    n = exp(wildcards)["label"]["shards"]
    return [f"{folder}/shard_{i}_of_{n}{suffix}" for i in range(n)]


def label_shards(wildcards):
    return shard_files(
        wildcards, f"results/{wildcards.experiment}/{wildcards.model}/" f"pseudo_masks_{wildcards.subset}.shards", ".h5"
    )


def score_shards(wildcards, suffix):
    """The scoring shards' files (``suffix`` .tsv or .h5), or their paths without a suffix."""
    return shard_files(wildcards, f"results/{wildcards.experiment}/teacher/stability_scores.shards", suffix)


def pseudo_sources(wildcards):
    """(split list, mask store) pairs a student trains on, by the ST / ST++ recipe."""
    r = f"results/{wildcards.experiment}"
    unlabeled = split_list(wildcards.experiment, "unlabeled")
    reliable = (f"{r}/stpp_split/reliable_ids.txt", f"{r}/teacher/pseudo_masks_unlabeled.h5")
    return {
        "st_student": [(unlabeled, f"{r}/teacher/pseudo_masks_unlabeled.h5")],
        "stpp_student1": [reliable],
        "stpp_student2": [
            reliable,
            (f"{r}/stpp_split/unreliable_ids.txt", f"{r}/stpp_student1/pseudo_masks_unreliable.h5"),
        ],
        "stpp_student3": [(unlabeled, f"{r}/stpp_student2/pseudo_masks_unlabeled.h5")],
    }[wildcards.student]


def pseudo_inputs(wildcards):
    return [path for pair in pseudo_sources(wildcards) for path in pair]


def pseudo_args(wildcards):
    return " ".join(f"--pseudo {shlex.join(pair)}" for pair in pseudo_sources(wildcards))


def pseudo_label_artifacts(wildcards, *stpp_keys):
    """The teacher's pseudo-masks and, when ST++ runs, the named ST++ outputs, as stage options."""
    r = f"results/{wildcards.experiment}"
    stpp = {
        "scores": f"{r}/teacher/stability_scores.tsv",
        "reliable": f"{r}/stpp_split/reliable_ids.txt",
        "unreliable": f"{r}/stpp_split/unreliable_ids.txt",
        "checkpoint_masks": f"{r}/teacher/checkpoint_masks.h5",
        "relabeled": f"{r}/stpp_student1/pseudo_masks_unreliable.h5",
    }
    inputs = {"teacher_masks": f"{r}/teacher/pseudo_masks_unlabeled.h5"}
    if "ST++" in config["methods"]:
        inputs.update({key: stpp[key] for key in stpp_keys})
    return inputs


def audit_inputs(wildcards):
    """What the audit measures: the pseudo-masks, and the scores, split and relabels of ST++."""
    return pseudo_label_artifacts(wildcards, "scores", "reliable", "unreliable", "relabeled")


def contact_inputs(wildcards):
    """What a contact sheet shows besides the images: the teacher's masks and, with ST++, the
    checkpoints' masks, the scores that order the rows and student 1's relabels."""
    return pseudo_label_artifacts(wildcards, "checkpoint_masks", "scores", "relabeled")


def audit_targets():
    """The audit, its figures and the charts of every experiment (the audit where pseudo-masks exist)."""
    out = expand(
        "results/{experiment}/audit/{figure}.png", experiment=EXPERIMENTS, figure=["training_curves", "summary"]
    )
    if {"ST", "ST++"} & set(config["methods"]):
        selections = ["most_stable", "least_stable", "random"] if "ST++" in config["methods"] else ["random"]
        out += expand(
            "results/{experiment}/audit/{name}",
            experiment=EXPERIMENTS,
            name=["audit.json", *(f"contact_{s}.png" for s in selections)],
        )
    if "ST++" in config["methods"]:
        out += expand("results/{experiment}/audit/stability_scores.png", experiment=EXPERIMENTS)
    return out


def class_names(wildcards):
    data = exp(wildcards)["data"]
    return data.get("class_names") or [str(c) for c in range(data["num_classes"])]


def summary_args(wildcards):
    return shlex.join(
        f"{name}=results/{wildcards.experiment}/{model}/metrics.json"
        for name, model in method_models(wildcards.experiment)
    )


def summary_inputs(wildcards):
    return [f"results/{wildcards.experiment}/{model}/metrics.json" for _, model in method_models(wildcards.experiment)]


def test_targets():
    """Every trained model's evaluation on data.test, for the experiments that have one."""
    return [
        f"results/{name}/{model}/test/metrics.json"
        for name in EXPERIMENTS
        if has_test(name)
        for _, model in method_models(name)
    ]
