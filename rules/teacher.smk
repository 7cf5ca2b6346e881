# Stage 1: the teacher, trained on the labeled images alone; its K checkpoints feed stage 3.
# SupOnly is this model's evaluation.


rule train_teacher:
    input:
        labeled=lambda wildcards: split_list(wildcards.experiment, "labeled"),
        data=checked_digests("labeled", val_if_validating=True),
    output:
        model="results/{experiment}/teacher/model.pt",
        # checkpoint_1..K-1 (K from config): a folder, since the count varies by experiment
        checkpoints=directory("results/{experiment}/teacher/checkpoints"),
        log_tsv="results/{experiment}/teacher/train_log.tsv",
    params:
        trainer=trainer,
        args=lambda wildcards: train_args(wildcards, exp(wildcards)["stpp"]["checkpoints"]),
        runtime=train_runtime_args,
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
    threads: resources_of("train")["threads"]
    resources:
        **train_resources(),
    log:
        "logs/{experiment}/teacher/train.log",
    benchmark:
        "benchmarks/{experiment}/teacher/train.tsv"
    conda:
        "../envs/stpp.yaml"
    shell:
        "{params.trainer} --labeled {input.labeled} {params.args} {params.runtime} --data-digests {input.data}"
        " --out-dir {params.out_dir}"
        " --resume-state {params.out_dir}/resume/state.pt > {log} 2>&1"
