# Stage 8: every trained model on the experiment's val list, then one summary table.


rule evaluate:
    input:
        model="results/{experiment}/{model}/model.pt",
        images=lambda wildcards: split_list(wildcards.experiment, "val"),
        data=checked_digests("val"),
    output:
        metrics="results/{experiment}/{model}/metrics.json",
        # each image's confusion matrix: what a paired bootstrap over images resamples
        per_image="results/{experiment}/{model}/per_image_confusion.npz",
    log:
        "logs/{experiment}/{model}/evaluate.log",
    benchmark:
        "benchmarks/{experiment}/{model}/evaluate.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("evaluate")["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        data=data_args,
        class_names=lambda wildcards: shlex.join(class_names(wildcards)),
        window=lambda wildcards: _args(**exp(wildcards)["evaluate"]),
        runtime=lambda wildcards, threads: runtime_args(threads),
    shell:
        "python -m stages.evaluate --model {input.model} --list {input.images} {params.data}"
        " --class-names {params.class_names} {params.window} {params.runtime} --out {output.metrics}"
        " --per-image {output.per_image} > {log} 2>&1"


# The same on data.test, where an experiment has one: results/<experiment>/<model>/test/.
use rule evaluate as evaluate_test with:
    input:
        model="results/{experiment}/{model}/model.pt",
        images=lambda wildcards: split_list(wildcards.experiment, "test"),
        data=checked_digests("test"),
    output:
        metrics="results/{experiment}/{model}/test/metrics.json",
        per_image="results/{experiment}/{model}/test/per_image_confusion.npz",
    log:
        "logs/{experiment}/{model}/evaluate_test.log",
    benchmark:
        "benchmarks/{experiment}/{model}/evaluate_test.tsv"


rule summarize:
    input:
        metrics=summary_inputs,
        data=checked_digests("val"),
    output:
        report(
            "results/{experiment}/summary.tsv",
            caption="../report/summary.rst",
            category="Results",
            subcategory="{experiment}",
        ),
    log:
        "logs/{experiment}/summarize.log",
    benchmark:
        "benchmarks/{experiment}/summarize.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        methods=summary_args,
    shell:
        "python -m stages.summarize --out {output} {params.methods} > {log} 2>&1"
