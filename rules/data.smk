# The data: the built-in synthetic data set (config key `demo`, used by config/config.yaml), and
# the data check that every training, labeling and evaluation job waits for.


# A checkpoint because check_data reads its lists to fingerprint the files they name.
checkpoint make_demo:
    output:
        labeled="resources/demo/labeled.txt",
        unlabeled="resources/demo/unlabeled.txt",
        val="resources/demo/val.txt",
        classes="resources/demo/classes.txt",
    log:
        "logs/demo/make_demo.log",
    benchmark:
        "benchmarks/demo/make_demo.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        out=lambda wildcards, output: os.path.dirname(output.labeled),
        demo=config["demo"],
    shell:
        # --force: Snakemake creates the output folder before the job; make_demo replaces it whole.
        "python -m stages.make_demo --out {params.out} --force --num-labeled {params.demo[num_labeled]}"
        " --num-unlabeled {params.demo[num_unlabeled]} --num-val {params.demo[num_val]}"
        " --size {params.demo[size]} --seed {params.demo[seed]} > {log} 2>&1"


# Every list, image and mask of an experiment, checked before any training; a changed image or
# mask re-runs it through its `files` param (data_stamp in common.smk). A checkpoint: the
# jobs that read the data take the digests of their lists from it (checked_digests), and
# Snakemake re-decides what they need only after it has run, so a changed file re-runs the jobs
# that read it, a file only touched re-runs the check alone, and a failed check (whose outputs Snakemake
# deletes) does not by itself re-run finished training once the data is fixed.
checkpoint check_data:
    input:
        data_lists,
        source_check=source_data_check,
    output:
        manifest="results/{experiment}/data_check/manifest.tsv",
        labeled="results/{experiment}/data_check/labeled.digest",
        unlabeled="results/{experiment}/data_check/unlabeled.digest",
        val="results/{experiment}/data_check/val.digest",
        # "no test list" without data.test, so that adding one re-runs only its evaluations
        test="results/{experiment}/data_check/test.digest",
        # "no review" without review.exclude and review.masks; read only by apply_review
        review="results/{experiment}/data_check/review.digest",
    log:
        "logs/{experiment}/check_data.log",
    benchmark:
        "benchmarks/{experiment}/check_data.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("check")["threads"]
    resources:
        **job_resources("check"),
    params:
        # every image and mask, by size and time: a changed one re-runs the check (see data_stamp)
        files=data_stamp,
        lists=lambda wildcards: PLAN.list_args(wildcards.experiment),
        review=lambda wildcards: PLAN.review_check_args(wildcards.experiment),
        data=data_args,
        train=lambda wildcards: _args(
            batch_size=exp(wildcards)["train"]["batch_size"],
            min_labeled=exp(wildcards)["train"]["min_labeled"],
            crop_size=exp(wildcards)["train"]["crop_size"],
            base_size=exp(wildcards)["train"]["base_size"],
            scale_range=exp(wildcards)["train"]["scale_range"],
            allow_labeled_in_unlabeled=exp(wildcards)["data"]["allow_labeled_in_unlabeled"] or None,
        ),
        out_dir=lambda wildcards, output: os.path.dirname(output.manifest),
    shell:
        "python -m stages.check_data {params.lists} {params.review} {params.data} {params.train} --workers {threads}"
        " --out-dir {params.out_dir} > {log} 2>&1"
