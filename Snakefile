# stpp: ST / ST++ semi-supervised semantic segmentation as a Snakemake workflow.
# One rule per stage; every rule runs one `python -m stages.<name>` command whose outputs are
# files under results/<experiment>/, with its log under logs/ and its timing under benchmarks/.

from snakemake.utils import min_version

min_version("9")


# The built-in demo unless the command line names config files: `--configfile config/camvid.yaml`
# then runs CamVid alone instead of CamVid on top of the demo's experiments.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/teacher.smk"
include: "rules/pseudo_labels.smk"
include: "rules/review.smk"
include: "rules/students.smk"
include: "rules/evaluate.smk"
include: "rules/audit.smk"
include: "rules/predict.smk"


rule all:
    default_target: True
    input:
        summaries=expand(L.SUMMARY, experiment=EXPERIMENTS),
        # so that a data check that failed (and lost its outputs) runs again until the data passes
        data_checks=expand(L.MANIFEST, experiment=EXPERIMENTS),
        audits=PLAN.audit_targets(),
        test_metrics=PLAN.test_targets(),
        predictions=PLAN.predict_targets(),


onsuccess:
    # What the run found, at the end of its output: each experiment's table, each method against
    # SupOnly, and where to look next. One evaluation on one val list is one sample: the studies'
    # intervals (docs/results.md) say what a difference of this size means.
    from stages.summarize import against_supervised, fewer_classes

    for experiment in EXPERIMENTS:
        summary = L.fill(L.SUMMARY, experiment=experiment)
        if os.path.exists(summary):
            with open(summary) as table:
                text = table.read()
            print(f"\n{summary}:\n{text}", end="")
            for line in against_supervised(text) + fewer_classes(text):
                print(f"  {line}")
            for line in data_check_lines(experiment, "WARNING"):
                print(f"  data check: {line}")
            audit = L.fill(L.AUDIT, experiment=experiment)
            if os.path.exists(audit):
                print(f"  audit: {audit}/ (audit.json and the figures)")
    print("report: snakemake --report report.html (the summaries, the audit, every figure, job timings)")


onerror:
    # A failed data check's findings (each with its file, list line and fix) on the console, not
    # only in its log: the console's own message says no more than that a command failed.
    for experiment in EXPERIMENTS:
        if not os.path.exists(L.fill(L.MANIFEST, experiment=experiment)):
            errors = data_check_lines(experiment, "ERROR")
            if errors:
                print(
                    f"\nThe data check of {experiment} failed ({L.fill(L.log_path('check_data'), experiment=experiment)}):",
                    *errors,
                    sep="\n  ",
                )
