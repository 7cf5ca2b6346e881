# The audit: the pseudo-masks measured against the unlabeled images' own masks, where the list
# has them (never used for training), and the figures; every output here is in the report
# (`snakemake --report report.html`), captioned by a file under report/.


rule audit:
    input:
        unpack(inputs("audit")),
        data=checked_digests("unlabeled"),
    output:
        **in_report("audit", "Audit", json="audit.rst", tsv="per_image.rst"),
    log:
        L.log_path("audit"),
    benchmark:
        L.benchmark_path("audit")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("evaluate")["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        settings=settings("audit"),
        inputs=input_args("audit", "images"),
    shell:
        "python -m stages.audit --list {input.images} {params.inputs} {params.settings}"
        " --out-json {output.json} --out-tsv {output.tsv} > {log} 2>&1"


rule figure_scores:
    input:
        unpack(inputs("figure_scores")),
        data=checked_digests("unlabeled"),  # every job downstream of the check takes one (common.smk)
    output:
        **in_report("figure_scores", "Audit", figure="stability_scores.rst"),
    log:
        L.log_path("figure_scores"),
    benchmark:
        L.benchmark_path("figure_scores")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    shell:
        "python -m stages.figures scores --scores {input.scores} --reliable {input.reliable}"
        " --per-image {input.per_image} --out {output.figure} > {log} 2>&1"


rule figure_contact_sheet:
    input:
        unpack(inputs("figure_contact_sheet")),
        data=checked_digests("unlabeled"),
    output:
        **in_report("figure_contact_sheet", "Audit", figure="contact_sheet.rst"),
    log:
        L.log_path("figure_contact_sheet"),
    benchmark:
        L.benchmark_path("figure_contact_sheet")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        settings=settings("figure_contact_sheet"),
        inputs=input_args("figure_contact_sheet", "images"),
    shell:
        "python -m stages.figures contact --list {input.images} {params.inputs} {params.settings}"
        " --out {output.figure} > {log} 2>&1"


rule figure_training_curves:
    input:
        unpack(inputs("figure_training_curves")),
        data=checked_digests("labeled"),
    output:
        **in_report("figure_training_curves", "Training", figure="training_curves.rst"),
    log:
        L.log_path("figure_training_curves"),
    benchmark:
        L.benchmark_path("figure_training_curves")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        logs=lambda wildcards: PLAN.curves_args(wildcards.experiment),
    shell:
        "python -m stages.figures curves --logs {params.logs} --out {output.figure} > {log} 2>&1"


rule figure_summary:
    input:
        unpack(inputs("figure_summary")),
        data=checked_digests("val"),
    output:
        **in_report("figure_summary", "Results", figure="summary_chart.rst"),
    log:
        L.log_path("figure_summary"),
    benchmark:
        L.benchmark_path("figure_summary")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    shell:
        "python -m stages.figures summary --summary {input.summary} --out {output.figure} > {log} 2>&1"
