# Stages 5 and 7 (and ST's single student, and the optional third round): a freshly initialised
# student on labeled + pseudo-labeled images. Which pseudo-labels each student sees is
# pseudo_sources() in common.smk.


rule train_student:
    input:
        labeled=lambda wildcards: split_list(wildcards.experiment, "labeled"),
        pseudo=pseudo_inputs,
        data=checked_digests("labeled", "unlabeled", val_if_validating=True),
    output:
        model="results/{experiment}/{student}/model.pt",
        log_tsv="results/{experiment}/{student}/train_log.tsv",
    log:
        "logs/{experiment}/{student}/train.log",
    benchmark:
        "benchmarks/{experiment}/{student}/train.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("train")["threads"]
    resources:
        **train_resources(),
    params:
        trainer=trainer,
        args=train_args,
        runtime=train_runtime_args,
        pseudo=pseudo_args,
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
    shell:
        "{params.trainer} --labeled {input.labeled} {params.pseudo} {params.args} {params.runtime}"
        " --data-digests {input.data} --out-dir {params.out_dir}"
        " --resume-state {params.out_dir}/resume/state.pt > {log} 2>&1"
