# Stages 2-4 and 6: TTA pseudo-labels, stability scores, the reliable/unreliable split, and
# relabeling with a student. One `label_shard` and one `score_shard` job per shard (config
# label.shards), each kind merged into the files one job would have written.


rule label_shard:
    input:
        unpack(inputs("label_shard")),
        # a changed unlabeled image re-runs the merge (below), which needs the shards again
        data=checked_digests("unlabeled", wait_only=True),
    output:
        **outputs("label_shard", all=temp),
    log:
        L.log_path("label_shard"),
    benchmark:
        L.benchmark_path("label_shard")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("label")["threads"]
    resources:
        **job_resources("label"),
    params:
        settings=settings("label_shard"),
        runtime=lambda wildcards, threads: PLAN.inference_runtime_args(wildcards.experiment, threads),
    shell:
        "python -m stages.label --model {input.model} --list {input.images} {params.settings} {params.runtime}"
        " --shard {wildcards.shard} --num-shards {wildcards.shards} --out {output.masks} > {log} 2>&1"


rule merge_label_shards:
    input:
        unpack(inputs("merge_label_shards")),
        data=checked_digests("unlabeled"),
    output:
        **outputs("merge_label_shards"),
    log:
        L.log_path("merge_label_shards"),
    benchmark:
        L.benchmark_path("merge_label_shards")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    shell:
        "python -m stages.merge_masks --out {output.masks} {input.shards} > {log} 2>&1"


rule score_shard:
    input:
        unpack(inputs("score_shard")),
        # a changed unlabeled image re-runs the merge (below), which needs the shards again
        data=checked_digests("unlabeled", wait_only=True),
    output:
        **outputs("score_shard", all=temp),
    log:
        L.log_path("score_shard"),
    benchmark:
        L.benchmark_path("score_shard")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("score")["threads"]
    resources:
        **job_resources("score"),
    params:
        settings=settings("score_shard"),
        # checkpoints 1..K-1 in the teacher's folder, then its model.pt
        checkpoints=lambda wildcards, input: shlex.join(PLAN.teacher_checkpoints(wildcards.experiment)),
        runtime=lambda wildcards, threads: PLAN.inference_runtime_args(wildcards.experiment, threads),
    shell:
        "python -m stages.score --checkpoints {params.checkpoints} --list {input.images} {params.settings}"
        " {params.runtime} --shard {wildcards.shard} --num-shards {wildcards.shards}"
        " --scores {output.scores} --masks {output.masks} > {log} 2>&1"


rule merge_score_shards:
    input:
        unpack(inputs("merge_score_shards")),
        data=checked_digests("unlabeled"),
    output:
        **outputs("merge_score_shards"),
    log:
        L.log_path("merge_score_shards"),
    benchmark:
        L.benchmark_path("merge_score_shards")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        shards=lambda wildcards, input: shlex.join(path.removesuffix(".tsv") for path in input.scores),
    shell:
        "python -m stages.merge_scores --list {input.images} --shards {params.shards}"
        " --scores {output.scores} --masks {output.masks} > {log} 2>&1"


rule split_reliable:
    input:
        # the scores, and the unlabeled list or, with a review, the images it keeps (apply_review)
        unpack(inputs("split_reliable")),
        data=checked_digests("unlabeled"),
    output:
        **outputs("split_reliable"),
    log:
        L.log_path("split_reliable"),
    benchmark:
        L.benchmark_path("split_reliable")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        settings=settings("split_reliable"),
    shell:
        "python -m stages.split --scores {input.scores} --list {input.images} {params.settings}"
        " --reliable {output.reliable} --unreliable {output.unreliable} > {log} 2>&1"


rule select_pixels:
    input:
        # the teacher's masks and, for student 2's masks, student 1's relabel of every image
        unpack(inputs("select_pixels")),
        data=checked_digests("unlabeled"),
    output:
        **outputs("select_pixels"),
    log:
        L.log_path("select_pixels"),
    benchmark:
        L.benchmark_path("select_pixels")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        settings=settings("select_pixels"),
        inputs=input_args("select_pixels"),
    shell:
        "python -m stages.select_pixels {params.inputs} {params.settings} --out {output.masks} > {log} 2>&1"
