# New images segmented by the trained models (config predict:): masks, colour masks, overlays and
# predictions.tsv per model, re-run when the model or the images change (stages.predict).


rule predict:
    input:
        unpack(inputs("predict")),
    output:
        **outputs("predict", folder=directory),
    log:
        L.log_path("predict"),
    benchmark:
        L.benchmark_path("predict")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("evaluate")["threads"]
    resources:
        **job_resources("evaluate"),
    params:
        settings=settings("predict"),
        # every image, by path, size and time: a new, changed or removed one re-runs the predictions
        images=lambda wildcards: PLAN.images_stamp(wildcards.experiment),
        runtime=lambda wildcards, threads: PLAN.runtime_args(threads),
    shell:
        "python -m stages.predict --model {input.model} {params.settings} {params.runtime}"
        " --out {output.folder} > {log} 2>&1"
