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
    log:
        "logs/{experiment}/teacher/train.log",
    benchmark:
        "benchmarks/{experiment}/teacher/train.tsv"
    wildcard_constraints:
        experiment=OWN_TEACHER,
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("train")["threads"]
    resources:
        **train_resources(),
    params:
        trainer=trainer,
        args=lambda wildcards: train_args(wildcards, exp(wildcards)["stpp"]["checkpoints"]),
        runtime=train_runtime_args,
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
    shell:
        "{params.trainer} --labeled {input.labeled} {params.args} {params.runtime} --data-digests {input.data}"
        " --out-dir {params.out_dir}"
        " --resume-state {params.out_dir}/resume/state.pt > {log} 2>&1"


# teacher_from: <experiment>: this experiment's teacher is a copy of that one's, a real
# dependency of the DAG (re-training that teacher re-copies it and re-runs what follows here).
rule copy_teacher:
    input:
        # the source's training outputs (model.pt is written last, so it stands for them all)
        model=lambda wildcards: f"results/{exp(wildcards)['teacher_from']}/teacher/model.pt",
        log_tsv=lambda wildcards: f"results/{exp(wildcards)['teacher_from']}/teacher/train_log.tsv",
    output:
        model="results/{experiment}/teacher/model.pt",
        checkpoints=directory("results/{experiment}/teacher/checkpoints"),
        log_tsv="results/{experiment}/teacher/train_log.tsv",
    log:
        "logs/{experiment}/teacher/copy_teacher.log",
    benchmark:
        "benchmarks/{experiment}/teacher/copy_teacher.tsv"
    wildcard_constraints:
        experiment=BORROWED_TEACHER,
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        source=lambda wildcards, input: os.path.dirname(input.model),
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
    shell:
        "python -m stages.copy_teacher --source {params.source} --out-dir {params.out_dir} > {log} 2>&1"


# ... and with it every file both experiments compute from the same settings all the way up to
# that teacher (Plan.copied_files): the teacher's pseudo-masks and scores, the split, students and
# their relabels. Training and labeling are deterministic, so the copy is the file this job would
# write; an ablation re-computes only what its settings change.
ruleorder: copy_shared > merge_label_shards
ruleorder: copy_shared > merge_score_shards
ruleorder: copy_shared > split_reliable
ruleorder: copy_shared > train_student


rule copy_shared:
    input:
        source=lambda wildcards: COPIED[f"results/{wildcards.shared}"],
        data=shared_digests,
    output:
        "results/{shared}",
    log:
        "logs/{shared}.copy.log",
    benchmark:
        "benchmarks/{shared}.copy.tsv"
    wildcard_constraints:
        shared=one_of(path.removeprefix("results/") for path in COPIED),
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        source=lambda wildcards, input: os.path.dirname(input.source),
        out_dir=lambda wildcards, output: os.path.dirname(output[0]),
        name=lambda wildcards, output: os.path.basename(output[0]),
    shell:
        "python -m stages.copy_teacher --source {params.source} --out-dir {params.out_dir}"
        " --files {params.name} > {log} 2>&1"
