# Stage 1: the teacher, trained on the labeled images alone; its K checkpoints feed stage 3.
# SupOnly is this model's evaluation.


rule train_teacher:
    input:
        unpack(inputs("train_teacher")),
        data=checked_digests("labeled", val_if_validating=True),
    output:
        # checkpoint_1..K-1 (K from config): a folder, since the count varies by experiment
        **outputs("train_teacher", checkpoints=directory),
    log:
        L.log_path("train_teacher"),
    benchmark:
        L.benchmark_path("train_teacher")
    wildcard_constraints:
        experiment=OWN_TEACHER,
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("train")["threads"]
    resources:
        **job_resources("train"),
    params:
        settings=settings("train_teacher"),
        trainer=lambda wildcards: PLAN.trainer(wildcards.experiment),
        runtime=lambda wildcards, threads: PLAN.train_runtime_args(wildcards.experiment, threads),
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
        resume=lambda wildcards, output: os.path.join(os.path.dirname(output.model), L.RESUME_FILE),
    shell:
        "{params.trainer} --labeled {input.labeled} {params.settings} {params.runtime} --data-digests {input.data}"
        " --out-dir {params.out_dir} --resume-state {params.resume} > {log} 2>&1"


# teacher_from: <experiment>: this experiment's teacher is a copy of that one's, a real
# dependency of the DAG (re-training that teacher re-copies it and re-runs what follows here).
rule copy_teacher:
    input:
        # the source's training outputs (model.pt is written last, so it stands for them all)
        unpack(inputs("copy_teacher")),
    output:
        **outputs("copy_teacher", checkpoints=directory),
    log:
        L.log_path("copy_teacher"),
    benchmark:
        L.benchmark_path("copy_teacher")
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


# ... and with it every file both experiments compute with equal copy keys all the way up to that
# teacher (Plan.copied_files): the teacher's pseudo-masks and scores, the split, students and
# their relabels. Training and labeling are deterministic, so the copy is the file this job would
# write; an ablation re-computes only what its settings change. copy_shared wins over each rule
# that writes such a file.
for rule_name in sorted({producer(path)[0] for path in COPIED}):
    workflow.ruleorder("copy_shared", rule_name)


rule copy_shared:
    input:
        source=lambda wildcards: COPIED[f"{L.RESULTS}/{wildcards.shared}"],
        data=checked_digests("labeled", "unlabeled"),
    output:
        f"{L.RESULTS}/{{shared}}",
    log:
        L.log_path("copy_shared"),
    benchmark:
        L.benchmark_path("copy_shared")
    wildcard_constraints:
        shared=one_of(path.removeprefix(f"{L.RESULTS}/") for path in COPIED),
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
