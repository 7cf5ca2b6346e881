"""The workflow's layout (every path and name, layout.py) and plan (each rule's inputs and
settings from the config, plan.py): Snakemake's rules are thin adapters of these."""

from .layout import MODELS, STUDENTS, TEACHER
from .plan import Plan, Step, cli_args, flat, log_lines, one_of, pairs_args, producer

__all__ = [
    "MODELS",
    "STUDENTS",
    "TEACHER",
    "Plan",
    "Step",
    "cli_args",
    "flat",
    "log_lines",
    "one_of",
    "pairs_args",
    "producer",
]
