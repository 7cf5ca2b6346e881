"""Every path the workflow reads or writes, and every model's and method's name, written once.

Patterns carry Snakemake's ``{wildcards}``: the rules use them as they are (their outputs, logs
and benchmarks), the plan (stages/workflow/plan.py), the stages and benchmarks/ fill them in with
:func:`fill`. A newcomer finds every file of a run here; docs/outputs.md draws how they connect.
Free of Snakemake and torch.
"""

from __future__ import annotations

import re

# -- filling patterns in -----------------------------------------------------------------------

_WILDCARD = re.compile(r"\{(\w+)\}")


def fill(pattern: str, **wildcards) -> str:
    """``pattern`` with the named wildcards filled in; the others stay (``{model}``)."""
    return _WILDCARD.sub(lambda m: str(wildcards[m[1]]) if m[1] in wildcards else m[0], pattern)


def wildcards_of(pattern: str) -> list[str]:
    return _WILDCARD.findall(pattern)


# -- names ---------------------------------------------------------------------------------

TEACHER = "teacher"
STUDENTS = ("st_student", "stpp_student1", "stpp_student2", "stpp_student3")
MODELS = (TEACHER, *STUDENTS)
SUBSETS = ("unlabeled", "unreliable")  # what a model pseudo-labels: the unlabeled list, or ST++'s unreliable half
SPLIT_LISTS = ("labeled", "unlabeled", "val", "test")  # the config's data lists (test: optional)
SELECTIONS = ("most_stable", "least_stable", "random")  # the contact sheets' rows
STRONG_OPS = ("colour_jitter", "grayscale", "blur", "cutout")  # strong augmentations, in their order


def method_models(methods, rounds: int) -> list[tuple[str, str]]:
    """The method -> model table: (method name, the model whose evaluation it reports), in the
    summary's order, for the configured methods and ST++'s rounds (2 or 3)."""
    rows = []
    if "SupOnly" in methods:
        rows.append(("SupOnly", TEACHER))
    if "ST" in methods:
        rows.append(("ST", "st_student"))
    if "ST++" in methods:
        rows.append(("ST++ student 1", "stpp_student1"))
        if rounds == 3:
            rows.append(("ST++ student 2", "stpp_student2"))
        rows.append(("ST++ final", f"stpp_student{rounds}"))
    return rows


# -- what a training job writes into its model's folder -------------------------------------

MODEL_FILE = "model.pt"  # the final weights (the K-th checkpoint)
BEST_FILE = "best.pt"  # the best-on-validation weights, where training validates
LOG_FILE = "train_log.tsv"  # one row per epoch
CHECKPOINTS_FOLDER = "checkpoints"  # the teacher's checkpoints 1..K-1
RESUME_FILE = "resume/state.pt"  # the resume state, gone once training ends


def checkpoint_file(j: int) -> str:
    """Checkpoint j (1..K-1) of a training job, relative to its model's folder."""
    return f"{CHECKPOINTS_FOLDER}/checkpoint_{j}.pt"


# -- results/ --------------------------------------------------------------------------------

RESULTS = "results"
EXPERIMENT = f"{RESULTS}/{{experiment}}"
MODEL_DIR = f"{EXPERIMENT}/{{model}}"
MODEL = f"{MODEL_DIR}/{MODEL_FILE}"
BEST = f"{MODEL_DIR}/{BEST_FILE}"
TRAIN_LOG = f"{MODEL_DIR}/{LOG_FILE}"
RESUME_STATE = f"{MODEL_DIR}/{RESUME_FILE}"
CHECKPOINTS = f"{EXPERIMENT}/{TEACHER}/{CHECKPOINTS_FOLDER}"

PSEUDO_MASKS = f"{MODEL_DIR}/pseudo_masks_{{subset}}.h5"
PSEUDO_MASKS_SHARD = f"{MODEL_DIR}/pseudo_masks_{{subset}}.shards/shard_{{shard}}_of_{{shards}}.h5"
SCORES = f"{EXPERIMENT}/{TEACHER}/stability_scores.tsv"
CHECKPOINT_MASKS = f"{EXPERIMENT}/{TEACHER}/checkpoint_masks.h5"
SCORES_SHARD = f"{EXPERIMENT}/{TEACHER}/stability_scores.shards/shard_{{shard}}_of_{{shards}}"  # .tsv and .h5
RELIABLE = f"{EXPERIMENT}/stpp_split/reliable_ids.txt"
UNRELIABLE = f"{EXPERIMENT}/stpp_split/unreliable_ids.txt"
PIXEL_PHASES = ("confident", "combined")  # stpp.selection pixel: student 1's masks, student 2's
PIXEL_MASKS = f"{EXPERIMENT}/stpp_split/pixel_masks_{{phase}}.h5"

METRICS = f"{MODEL_DIR}/metrics.json"
PER_IMAGE = f"{MODEL_DIR}/per_image_confusion.npz"  # each image's confusion matrix (paired bootstrap)
TEST_METRICS = f"{MODEL_DIR}/test/metrics.json"
TEST_PER_IMAGE = f"{MODEL_DIR}/test/per_image_confusion.npz"
SUMMARY = f"{EXPERIMENT}/summary.tsv"

DATA_CHECK = f"{EXPERIMENT}/data_check"
MANIFEST = f"{DATA_CHECK}/manifest.tsv"
DIGESTS = {name: f"{DATA_CHECK}/{name}.digest" for name in (*SPLIT_LISTS, "review")}

PREDICTIONS = f"{EXPERIMENT}/predictions/{{model}}"  # rule predict: masks/, color/, overlays/, predictions.tsv

REVIEW_KEPT = f"{EXPERIMENT}/review/kept_ids.txt"
REVIEW_CORRECTED = f"{EXPERIMENT}/review/corrected_ids.txt"
REVIEW_CORRECTED_MASKS = f"{EXPERIMENT}/review/corrected_masks.h5"
REVIEW_SHEET = f"{EXPERIMENT}/review_sheet"

AUDIT = f"{EXPERIMENT}/audit"
AUDIT_JSON = f"{AUDIT}/audit.json"
AUDIT_TSV = f"{AUDIT}/per_image.tsv"
FIGURE_SCORES = f"{AUDIT}/stability_scores.png"
FIGURE_CONTACT = f"{AUDIT}/contact_{{selection}}.png"
FIGURE_CURVES = f"{AUDIT}/training_curves.png"
FIGURE_SUMMARY = f"{AUDIT}/summary.png"

DEMO = "resources/demo"  # the built-in synthetic data set (config key demo)
DEMO_LISTS = {name: f"{DEMO}/{name}.txt" for name in ("labeled", "unlabeled", "val", "classes")}

# -- what each rule writes, and its log and benchmark -----------------------------------------

OUTPUTS = {
    "make_demo": DEMO_LISTS,
    "check_data": {"manifest": MANIFEST, **DIGESTS},
    "train_teacher": {
        "model": fill(MODEL, model=TEACHER),
        "checkpoints": CHECKPOINTS,
        "log_tsv": fill(TRAIN_LOG, model=TEACHER),
    },
    "train_student": {"model": MODEL, "log_tsv": TRAIN_LOG},
    "label_shard": {"masks": PSEUDO_MASKS_SHARD},
    "merge_label_shards": {"masks": PSEUDO_MASKS},
    "score_shard": {"scores": f"{SCORES_SHARD}.tsv", "masks": f"{SCORES_SHARD}.h5"},
    "merge_score_shards": {"scores": SCORES, "masks": CHECKPOINT_MASKS},
    "split_reliable": {"reliable": RELIABLE, "unreliable": UNRELIABLE},
    "select_pixels": {"masks": PIXEL_MASKS},
    "apply_review": {"kept": REVIEW_KEPT, "corrected": REVIEW_CORRECTED, "masks": REVIEW_CORRECTED_MASKS},
    "review_sheet": {"sheet": REVIEW_SHEET},
    "predict": {"folder": PREDICTIONS},
    "evaluate": {"metrics": METRICS, "per_image": PER_IMAGE},
    "evaluate_test": {"metrics": TEST_METRICS, "per_image": TEST_PER_IMAGE},
    "summarize": {"summary": SUMMARY},
    "audit": {"json": AUDIT_JSON, "tsv": AUDIT_TSV},
    "figure_scores": {"figure": FIGURE_SCORES},
    "figure_contact_sheet": {"figure": FIGURE_CONTACT},
    "figure_training_curves": {"figure": FIGURE_CURVES},
    "figure_summary": {"figure": FIGURE_SUMMARY},
}
OUTPUTS["copy_teacher"] = OUTPUTS["train_teacher"]  # the same files, copied from teacher_from's

# Which values a rule's wildcards take where it differs from the workflow's (WILDCARDS below).
RULE_WILDCARDS = {"train_student": {"model": STUDENTS}}

# A job's name under logs/ (.log) and benchmarks/ (.tsv).
JOBS = {
    "make_demo": "demo/make_demo",
    "check_data": "{experiment}/check_data",
    "train_teacher": "{experiment}/teacher/train",
    "copy_teacher": "{experiment}/teacher/copy_teacher",
    "copy_shared": "{shared}.copy",
    "train_student": "{experiment}/{model}/train",
    "label_shard": "{experiment}/{model}/label_{subset}/shard_{shard}_of_{shards}",
    "merge_label_shards": "{experiment}/{model}/label_{subset}/merge",
    "score_shard": "{experiment}/teacher/score_stability/shard_{shard}_of_{shards}",
    "merge_score_shards": "{experiment}/teacher/score_stability/merge",
    "split_reliable": "{experiment}/stpp_split/split_reliable",
    "select_pixels": "{experiment}/stpp_split/select_pixels_{phase}",
    "apply_review": "{experiment}/review/apply_review",
    "review_sheet": "{experiment}/review/review_sheet",
    "predict": "{experiment}/{model}/predict",
    "evaluate": "{experiment}/{model}/evaluate",
    "evaluate_test": "{experiment}/{model}/evaluate_test",
    "summarize": "{experiment}/summarize",
    "audit": "{experiment}/audit/audit",
    "figure_scores": "{experiment}/audit/figure_scores",
    "figure_contact_sheet": "{experiment}/audit/contact_{selection}",
    "figure_training_curves": "{experiment}/audit/figure_training_curves",
    "figure_summary": "{experiment}/audit/figure_summary",
}


def log_path(rule: str) -> str:
    return f"logs/{JOBS[rule]}.log"


def benchmark_path(rule: str) -> str:
    return f"benchmarks/{JOBS[rule]}.tsv"
