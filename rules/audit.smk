# The audit: the pseudo-masks measured against the unlabeled images' own masks, where the list
# has them (never used for training), and the figures; every output here is in the report
# (`snakemake --report report.html`), captioned by a file under report/.


rule audit:
    input:
        unpack(audit_inputs),
        images=lambda wildcards: split_list(wildcards.experiment, "unlabeled"),
        data=checked_digests("unlabeled"),
    output:
        json=report(
            "results/{experiment}/audit/audit.json",
            caption="../report/audit.rst",
            category="Audit",
            subcategory="{experiment}",
        ),
        tsv=report(
            "results/{experiment}/audit/per_image.tsv",
            caption="../report/per_image.rst",
            category="Audit",
            subcategory="{experiment}",
        ),
    log:
        "logs/{experiment}/audit/audit.log",
    benchmark:
        "benchmarks/{experiment}/audit/audit.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("evaluate")["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        inputs=lambda wildcards, input: _args(**{key: input[key] for key in audit_inputs(wildcards)}),
        data=data_args,
        class_names=lambda wildcards: shlex.join(class_names(wildcards)),
    shell:
        "python -m stages.audit --list {input.images} {params.inputs} {params.data}"
        " --class-names {params.class_names} --out-json {output.json} --out-tsv {output.tsv} > {log} 2>&1"


rule figure_scores:
    input:
        scores="results/{experiment}/teacher/stability_scores.tsv",
        reliable="results/{experiment}/stpp_split/reliable_ids.txt",
        per_image="results/{experiment}/audit/per_image.tsv",
        data=checked_digests("unlabeled"),  # every job downstream of the check takes one (common.smk)
    output:
        report(
            "results/{experiment}/audit/stability_scores.png",
            caption="../report/stability_scores.rst",
            category="Audit",
            subcategory="{experiment}",
        ),
    log:
        "logs/{experiment}/audit/figure_scores.log",
    benchmark:
        "benchmarks/{experiment}/audit/figure_scores.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    shell:
        "python -m stages.figures scores --scores {input.scores} --reliable {input.reliable}"
        " --per-image {input.per_image} --out {output} > {log} 2>&1"


rule figure_contact_sheet:
    input:
        unpack(contact_inputs),
        images=lambda wildcards: split_list(wildcards.experiment, "unlabeled"),
        data=checked_digests("unlabeled"),
    output:
        report(
            "results/{experiment}/audit/contact_{selection}.png",
            caption="../report/contact_sheet.rst",
            category="Audit",
            subcategory="{experiment}",
        ),
    log:
        "logs/{experiment}/audit/contact_{selection}.log",
    benchmark:
        "benchmarks/{experiment}/audit/contact_{selection}.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        inputs=lambda wildcards, input: _args(**{key: input[key] for key in contact_inputs(wildcards)}),
        data=data_args,
        class_names=lambda wildcards: shlex.join(class_names(wildcards)),
        palette=lambda wildcards: exp(wildcards)["data"]["palette"],
    shell:
        "python -m stages.figures contact --list {input.images} {params.inputs} {params.data}"
        " --class-names {params.class_names} --palette {params.palette} --select {wildcards.selection}"
        " --out {output} > {log} 2>&1"


rule figure_training_curves:
    input:
        logs=lambda wildcards: [
            f"results/{wildcards.experiment}/{model}/train_log.tsv" for _, model in method_models(wildcards.experiment)
        ],
        data=checked_digests("labeled"),
    output:
        report(
            "results/{experiment}/audit/training_curves.png",
            caption="../report/training_curves.rst",
            category="Training",
            subcategory="{experiment}",
        ),
    log:
        "logs/{experiment}/audit/figure_training_curves.log",
    benchmark:
        "benchmarks/{experiment}/audit/figure_training_curves.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        logs=lambda wildcards: shlex.join(
            f"{model}=results/{wildcards.experiment}/{model}/train_log.tsv"
            for _, model in method_models(wildcards.experiment)
        ),
    shell:
        "python -m stages.figures curves --logs {params.logs} --out {output} > {log} 2>&1"


rule figure_summary:
    input:
        summary="results/{experiment}/summary.tsv",
        data=checked_digests("val"),
    output:
        report(
            "results/{experiment}/audit/summary.png",
            caption="../report/summary_chart.rst",
            category="Results",
            subcategory="{experiment}",
        ),
    log:
        "logs/{experiment}/audit/figure_summary.log",
    benchmark:
        "benchmarks/{experiment}/audit/figure_summary.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    shell:
        "python -m stages.figures summary --summary {input.summary} --out {output} > {log} 2>&1"
