# The data: the built-in synthetic data set (config key `demo`, used by config/config.yaml), and
# the data check that every training, labeling and evaluation job waits for.


# A checkpoint because check_data reads its lists to fingerprint the files they name.
checkpoint make_demo:
    output:
        **outputs("make_demo"),
    log:
        L.log_path("make_demo"),
    benchmark:
        L.benchmark_path("make_demo")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        # the demo's keys as sorted options: a reordered config re-runs nothing
        settings=lambda wildcards: PLAN.make_demo().args,
        out=lambda wildcards, output: os.path.dirname(output.labeled),
    shell:
        # --force: Snakemake creates the output folder before the job; make_demo replaces it whole.
        "python -m stages.make_demo --out {params.out} --force {params.settings} > {log} 2>&1"


# Every list, image and mask of an experiment, checked before any training; a changed image or
# mask re-runs it through its `files` param (data_stamp in common.smk). A checkpoint: the
# jobs that read the data take the digests of their lists from it (checked_digests), and
# Snakemake re-decides what they need only after it has run, so a changed file re-runs the jobs
# that read it, a file only touched re-runs the check alone, and a failed check (whose outputs Snakemake
# deletes) does not by itself re-run finished training once the data is fixed.
# The test digest says "no test list" without data.test, so that adding one re-runs only its
# evaluations; the review digest "no review" without review keys (read only by apply_review).
checkpoint check_data:
    input:
        data_lists,
        source_check=source_data_check,
    output:
        **outputs("check_data"),
    log:
        L.log_path("check_data"),
    benchmark:
        L.benchmark_path("check_data")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("check")["threads"]
    resources:
        **job_resources("check"),
    params:
        # every image and mask, by size and time: a changed one re-runs the check (see data_stamp)
        files=data_stamp,
        settings=settings("check_data"),
        out_dir=lambda wildcards, output: os.path.dirname(output.manifest),
    shell:
        "python -m stages.check_data {params.settings} --workers {threads} --out-dir {params.out_dir} > {log} 2>&1"
