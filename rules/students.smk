# Stages 5 and 7 (and ST's single student, and the optional third round): a freshly initialised
# student on labeled + pseudo-labeled images. Which pseudo-labels each student sees is
# Plan.pseudo_sources (stages/workflow/plan.py).


rule train_student:
    input:
        unpack(inputs("train_student")),
        data=checked_digests("labeled", "unlabeled", val_if_validating=True),
    output:
        **outputs("train_student"),
    log:
        L.log_path("train_student"),
    benchmark:
        L.benchmark_path("train_student")
    wildcard_constraints:
        **{name: one_of(values) for name, values in L.RULE_WILDCARDS["train_student"].items()},
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("train")["threads"]
    resources:
        **job_resources("train"),
    params:
        settings=settings("train_student"),
        # (split list, mask store) pairs: the inputs, as the trainer's --pseudo options
        pseudo=lambda wildcards, input: pairs_args("pseudo", input.pseudo),
        trainer=lambda wildcards: PLAN.trainer(wildcards.experiment),
        runtime=lambda wildcards, threads: PLAN.train_runtime_args(wildcards.experiment, threads),
        out_dir=lambda wildcards, output: os.path.dirname(output.model),
        resume=lambda wildcards, output: os.path.join(os.path.dirname(output.model), L.RESUME_FILE),
    shell:
        "{params.trainer} --labeled {input.labeled} {params.pseudo} {params.settings} {params.runtime}"
        " --data-digests {input.data} --out-dir {params.out_dir} --resume-state {params.resume} > {log} 2>&1"
