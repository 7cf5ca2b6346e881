# Snakemake's side of the plan. stages/workflow/layout.py names every path, stages/workflow/plan.py
# computes each rule's step (inputs and settings) from the config and is tested on its own; the
# functions here adapt them to what only Snakemake code can reach: wildcards, checkpoints,
# resources.
import os
import shlex
import sys

# `python` in the rules' commands is the interpreter that runs Snakemake (so a venv need not be
# activated), unless a software deployment method (conda: envs/stpp.yaml) provides its own.
if not workflow.deployment_settings.deployment_method:
    shell.prefix(f'set -euo pipefail; export PATH={shlex.quote(os.path.dirname(sys.executable))}:"$PATH"; ')

# The stages' own modules (free of torch): the config's check, the layout and the plan.
sys.path.insert(0, workflow.basedir)
from snakemake.utils import validate
from stages.workflow import layout as L
from stages.workflow.config import config_problems
from stages.workflow.plan import Plan, log_lines, one_of, pairs_args, producer

# Every fault of the config at once, each with its key and the fix; then the schema's defaults.
SCHEMA = os.path.join(workflow.basedir, "config", "config.schema.yaml")
if problems := config_problems(config, SCHEMA):
    raise ValueError(problems)
validate(config, SCHEMA)
PLAN = Plan(config)
PLAN.check()
EXPERIMENTS = PLAN.experiments


wildcard_constraints:
    experiment=one_of(EXPERIMENTS),
    model=one_of(L.MODELS),
    subset=one_of(L.SUBSETS),
    shard=r"\d+",
    shards=r"\d+",
    selection=one_of(L.SELECTIONS),
    phase=one_of(L.PIXEL_PHASES),


# Which experiments train their teacher and which copy another's (rules train_teacher, copy_teacher),
# and which files the latter copy from that experiment as well: {this file: the source's}.
OWN_TEACHER = one_of(PLAN.own_teacher())
BORROWED_TEACHER = one_of(PLAN.borrowed_teacher())
COPIED = PLAN.copied()


# -- the adapter: a rule's step, by its name -----------------------------------------------------
# Params functions of wildcards alone: Snakemake's params rerun trigger skips params functions
# that take threads, input or output, and a changed setting must re-run its job.


def step(rule, wildcards):
    return PLAN.step(rule, **dict(wildcards.items()))


def inputs(rule):
    """The rule's input files, by name (for unpack)."""
    return lambda wildcards: step(rule, wildcards).inputs


def settings(rule):
    """The rule's settings as its command's options: what Snakemake compares to decide a re-run."""
    return lambda wildcards: step(rule, wildcards).args


def outputs(rule, **wrap):
    """The rule's outputs from the layout, each named one wrapped (temp, directory) where asked."""
    return {name: wrap.get(name, wrap.get("all", str))(path) for name, path in L.OUTPUTS[rule].items()}


def in_report(rule, category, **captions):
    """The rule's outputs, each in the report under ``category`` with its caption (report/)."""
    return {
        name: report(path, caption=f"../report/{captions[name]}", category=category, subcategory="{experiment}")
        for name, path in L.OUTPUTS[rule].items()
    }


def input_args(rule, *leave_out):
    """Params function: the rule's named inputs as its stage's options (--name path)."""

    def args(wildcards, input):
        named = [key for key in step(rule, wildcards).inputs if key not in leave_out]
        return shlex.join(arg for key in named for arg in (f"--{key.replace('_', '-')}", input[key]))

    return args


def exp(wildcards):
    return PLAN.exp(wildcards.experiment)


# -- the data check: what every job that reads data waits for -----------------------------------


def data_lists(wildcards):
    """The split lists of an experiment (the data check's inputs)."""
    lists = step("check_data", wildcards).inputs["lists"]
    if set(lists) & set(rules.make_demo.output):
        checkpoints.make_demo.get()  # the lists do not exist until make_demo has run
    return lists


def data_stamp(wildcards):
    """A param of the data check: a fingerprint of every image, mask and review file its lists
    name (Plan.data_stamp), so that an edited, added, removed or touched file re-runs the check
    as an input file would, without Snakemake resolving each file as an input (at Pascal VOC's
    24,062 files that took 5 of the 8 seconds of `snakemake -n`). The check's digests then
    decide what else re-runs."""
    return PLAN.data_stamp(wildcards.experiment, data_lists(wildcards))


def checked_digests(*keys, val_if_validating=False, wait_only=False):
    """Input function: the data check's digests of the lists a job reads.

    Through the checkpoint, so that the job waits for the check and, when the check re-runs,
    re-runs only if a digest of its own lists changed (Snakemake compares input checksums).
    Every job downstream of the check takes one: Snakemake re-decides after a checkpoint only
    for the jobs that depend on it directly, and would re-run the others for the check alone.
    ``wait_only``: the job waits for the check but a changed digest alone does not re-run it
    (for jobs with temp() outputs, whose recorded checksums go with the deleted files)."""

    def digests(wildcards):
        experiment = wildcards.experiment if "experiment" in wildcards.keys() else wildcards.shared.split("/")[0]
        check = checkpoints.check_data.get(experiment=experiment).output
        names = list(keys)
        if val_if_validating and PLAN.exp(experiment)["train"]["val_every"]:
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
    return [ancient(L.fill(L.MANIFEST, experiment=source))] if source else []


def data_check_lines(experiment, level):
    return log_lines(L.fill(L.log_path("check_data"), experiment=experiment), level)


# -- resources -------------------------------------------------------------------------------------


def resources_of(kind):
    return config["resources"][kind]


def job_resources(kind):
    """A rule's resources from the config's ``resources: <kind>`` block: memory, GPUs (a GPU
    model and CPUs per GPU where set; none asked for with gpu: 0) and a runtime that grows with
    each attempt, so that a job retried after hitting its time limit gets more time. A training
    job asks for train.gpus GPUs where that experiment trains on several."""
    r = resources_of(kind)
    out = {"mem_mb": r["mem_mb"], "runtime": lambda wildcards, attempt: r["runtime"] * attempt, "gpu": r["gpu"]}
    out.update({key: r[key] for key in ("gpu_model", "cpus_per_gpu") if key in r})
    if kind == "train":
        out["gpu"] = lambda wildcards: (
            exp(wildcards)["train"]["gpus"] if exp(wildcards)["train"]["gpus"] > 1 else r["gpu"]
        )
    return out
