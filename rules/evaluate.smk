# Stage 8: every trained model on the experiment's val list, then one summary table.


rule evaluate:
    input:
        unpack(inputs("evaluate")),
        data=checked_digests("val"),
    output:
        # and each image's confusion matrix: what a paired bootstrap over images resamples
        **outputs("evaluate"),
    log:
        L.log_path("evaluate"),
    benchmark:
        L.benchmark_path("evaluate")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("evaluate")["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        settings=settings("evaluate"),
        runtime=lambda wildcards, threads: PLAN.runtime_args(threads),
    shell:
        "python -m stages.evaluate --model {input.model} --list {input.images} {params.settings} {params.runtime}"
        " --out {output.metrics} --per-image {output.per_image} > {log} 2>&1"


# The same on data.test, where an experiment has one: results/<experiment>/<model>/test/.
use rule evaluate as evaluate_test with:
    input:
        unpack(inputs("evaluate_test")),
        data=checked_digests("test"),
    output:
        **outputs("evaluate_test"),
    log:
        L.log_path("evaluate_test"),
    benchmark:
        L.benchmark_path("evaluate_test")
    params:
        settings=settings("evaluate_test"),
        runtime=lambda wildcards, threads: PLAN.runtime_args(threads),


rule summarize:
    input:
        unpack(inputs("summarize")),
        data=checked_digests("val"),
    output:
        **in_report("summarize", "Results", summary="summary.rst"),
    log:
        L.log_path("summarize"),
    benchmark:
        L.benchmark_path("summarize")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        methods=lambda wildcards: PLAN.summary_args(wildcards.experiment),
    shell:
        "python -m stages.summarize --out {output.summary} {params.methods} > {log} 2>&1"
