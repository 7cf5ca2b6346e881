# Snakemake's side of the plan: stages/workflow.py computes every input list and argument from
# the config (and is tested on its own); the functions here adapt it to wildcards, checkpoints
# and resources, which only Snakemake code can reach.
import hashlib
import os
import shlex
import sys

# `python` in the rules' commands is the interpreter that runs Snakemake (so a venv need not be
# activated), unless a software deployment method (conda: envs/stpp.yaml) provides its own.
if not workflow.deployment_settings.deployment_method:
    shell.prefix(f'set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; ')

# The stages' own modules (free of torch): the plan, and the list reader that names the check's inputs.
sys.path.insert(0, workflow.basedir)
from stages.seg.splits import parse_split_list
from stages.workflow import STUDENTS, Plan, cli_args as _args, log_lines, one_of

PLAN = Plan(config)
PLAN.check()
EXPERIMENTS = PLAN.experiments


wildcard_constraints:
    experiment=one_of(EXPERIMENTS),
    student="|".join(STUDENTS),
    model="|".join(["teacher", *STUDENTS]),
    subset="unlabeled|unreliable",
    shard=r"\d+",
    shards=r"\d+",
    selection="most_stable|least_stable|random",


# Which experiments train their teacher and which copy another's (rules train_teacher, copy_teacher).
OWN_TEACHER = one_of(PLAN.own_teacher())
BORROWED_TEACHER = one_of(PLAN.borrowed_teacher())
# ... and which files the latter copy from that experiment as well: {this file: the source's}.
COPIED = PLAN.copied()


def _student(wildcards):
    return getattr(wildcards, "student", None)


def exp(wildcards):
    return PLAN.exp(wildcards.experiment)


def split_list(experiment, key):
    return PLAN.split_list(experiment, key)


def data_lists(wildcards):
    """The split lists of an experiment (the data check's inputs)."""
    lists = PLAN.lists(wildcards.experiment)
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
    files = [
        os.path.join(root, p)
        for path in data_lists(wildcards)
        for s in parse_split_list(path)[0]
        for p in (s.image, s.mask)
        if p
    ]
    stamp = hashlib.sha256()
    for f in files + PLAN.review_files(wildcards.experiment):  # and the exclusion list, each corrected mask
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


def source_data_check(wildcards):
    """With teacher_from: the source experiment's data check manifest, so that its check
    always finishes before this experiment's.

    Both checks are checkpoints, and this experiment's copies read the source's files. When
    this check finished first (touched data re-runs both), Snakemake marked every copy "input
    files updated by another job" from the source's jobs still waiting on the source's check,
    and did not take that back when the source's check found the digests unchanged
    (snakemake/snakemake#2175): the copies and everything after them re-ran. ancient(): the
    source's check re-running alone does not re-run this one."""
    source = exp(wildcards).get("teacher_from")
    return [ancient(f"results/{source}/data_check/manifest.tsv")] if source else []


def shared_digests(wildcards):
    """copy_shared's inputs from the data check of its file's experiment: a copy waits for the
    check as every job after it does (the copied file's freshness is its source's, whose own job
    depends on the same lists)."""
    experiment = wildcards.shared.split("/")[0]
    check = checkpoints.check_data.get(experiment=experiment).output
    return [check.labeled, check.unlabeled]


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


def train_resources():
    """A training job's resources: as job_resources("train"), with train.gpus GPUs where that
    experiment trains on several."""
    out = job_resources("train")
    base = out["gpu"]
    out["gpu"] = lambda wildcards: exp(wildcards)["train"]["gpus"] if exp(wildcards)["train"]["gpus"] > 1 else base
    return out


# Params functions of wildcards alone: Snakemake's params rerun trigger skips ("derived") params
# functions that take threads, input or output, and a changed setting must re-run its job.


def data_args(wildcards, labels=True):
    return PLAN.data_args(wildcards.experiment, labels)


def runtime_args(threads, batch_size=None, workers=0, training=False):
    return PLAN.runtime_args(threads, batch_size, workers, training)


def train_args(wildcards, checkpoints=1):
    return PLAN.train_args(wildcards.experiment, _student(wildcards), checkpoints)


def train_runtime_args(wildcards, threads):
    return PLAN.train_runtime_args(wildcards.experiment, threads)


def trainer(wildcards):
    return PLAN.trainer(wildcards.experiment)


def tta_args(wildcards, tta=True):
    return PLAN.tta_args(wildcards.experiment, tta)


def teacher_checkpoints(wildcards):
    return PLAN.teacher_checkpoints(wildcards.experiment)


def labeling_weights(wildcards):
    return PLAN.labeling_weights(wildcards.experiment, wildcards.model)


def labeling_list(wildcards):
    return PLAN.labeling_list(wildcards.experiment, wildcards.subset)


def shard_files(wildcards, folder, suffix):
    return PLAN.shard_files(wildcards.experiment, folder, suffix)


def label_shards(wildcards):
    folder = f"results/{wildcards.experiment}/{wildcards.model}/pseudo_masks_{wildcards.subset}.shards"
    return shard_files(wildcards, folder, ".h5")


def score_shards(wildcards, suffix):
    """The scoring shards' files (``suffix`` .tsv or .h5), or their paths without a suffix."""
    return shard_files(wildcards, f"results/{wildcards.experiment}/teacher/stability_scores.shards", suffix)


def pseudo_inputs(wildcards):
    return [path for pair in PLAN.pseudo_sources(wildcards.experiment, wildcards.student) for path in pair]


def pseudo_args(wildcards):
    return PLAN.pseudo_args(wildcards.experiment, wildcards.student)


def audit_inputs(wildcards):
    """What the audit measures: the pseudo-masks, the scores, split and relabels of ST++, and
    what a review excluded and corrected."""
    return {
        **PLAN.pseudo_label_artifacts(wildcards.experiment, "scores", "reliable", "unreliable", "relabeled"),
        **PLAN.review_artifacts(wildcards.experiment),
    }


def contact_inputs(wildcards):
    """What a contact sheet shows besides the images: the teacher's masks and, with ST++, the
    checkpoints' masks, the scores that order the rows and student 1's relabels."""
    return PLAN.pseudo_label_artifacts(wildcards.experiment, "checkpoint_masks", "scores", "relabeled")


def audit_targets():
    return PLAN.audit_targets()


def test_targets():
    return PLAN.test_targets()


def method_models(experiment):
    return PLAN.method_models(experiment)


def class_names(wildcards):
    return PLAN.class_names(wildcards.experiment)


def summary_args(wildcards):
    return PLAN.summary_args(wildcards.experiment)


def summary_inputs(wildcards):
    return PLAN.summary_inputs(wildcards.experiment)


def data_check_lines(experiment, level):
    return log_lines(f"logs/{experiment}/check_data.log", level)
