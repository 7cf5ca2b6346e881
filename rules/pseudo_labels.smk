# Stages 2-4 and 6: TTA pseudo-labels, stability scores, the reliable/unreliable split, and
# relabeling with a student. One `label_shard` and one `score_shard` job per shard (config
# label.shards), each kind merged into the files one job would have written.


rule label_shard:
    input:
        model="results/{experiment}/{model}/model.pt",
        images=labeling_list,
        # a changed unlabeled image re-runs the merge (below), which needs the shards again
        data=checked_digests("unlabeled", wait_only=True),
    output:
        temp("results/{experiment}/{model}/pseudo_masks_{subset}.shards/shard_{shard}_of_{shards}.h5"),
    log:
        "logs/{experiment}/{model}/label_{subset}/shard_{shard}_of_{shards}.log",
    benchmark:
        "benchmarks/{experiment}/{model}/label_{subset}/shard_{shard}_of_{shards}.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("label")["threads"]
    resources:
        **job_resources("label"),
    params:
        weights=labeling_weights,
        data=lambda wildcards: data_args(wildcards, labels=False),
        classes=lambda wildcards: exp(wildcards)["data"]["num_classes"],
        tta=tta_args,
        runtime=lambda wildcards, threads: runtime_args(threads, exp(wildcards)["label"]["batch_size"]),
    shell:
        "python -m stages.label --model {params.weights} --list {input.images} {params.data}"
        " --num-classes {params.classes} {params.tta}"
        " {params.runtime} --shard {wildcards.shard} --num-shards {wildcards.shards} --out {output} > {log} 2>&1"


rule merge_label_shards:
    input:
        shards=label_shards,
        data=checked_digests("unlabeled"),
    output:
        "results/{experiment}/{model}/pseudo_masks_{subset}.h5",
    log:
        "logs/{experiment}/{model}/label_{subset}/merge.log",
    benchmark:
        "benchmarks/{experiment}/{model}/label_{subset}/merge.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    shell:
        "python -m stages.merge_masks --out {output} {input.shards} > {log} 2>&1"


rule score_shard:
    input:
        checkpoints="results/{experiment}/teacher/checkpoints",
        model="results/{experiment}/teacher/model.pt",
        images=lambda wildcards: split_list(wildcards.experiment, "unlabeled"),
        # a changed unlabeled image re-runs the merge (below), which needs the shards again
        data=checked_digests("unlabeled", wait_only=True),
    output:
        scores=temp("results/{experiment}/teacher/stability_scores.shards/shard_{shard}_of_{shards}.tsv"),
        masks=temp("results/{experiment}/teacher/stability_scores.shards/shard_{shard}_of_{shards}.h5"),
    log:
        "logs/{experiment}/teacher/score_stability/shard_{shard}_of_{shards}.log",
    benchmark:
        "benchmarks/{experiment}/teacher/score_stability/shard_{shard}_of_{shards}.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("score")["threads"]
    resources:
        **job_resources("score"),
    params:
        checkpoints=teacher_checkpoints,
        num_classes=lambda wildcards: exp(wildcards)["data"]["num_classes"],
        data=lambda wildcards: data_args(wildcards, labels=False),
        tta=lambda wildcards: tta_args(wildcards, tta=exp(wildcards)["stpp"]["score_tta"]),
        runtime=lambda wildcards, threads: runtime_args(threads, exp(wildcards)["label"]["batch_size"]),
    shell:
        "python -m stages.score --checkpoints {params.checkpoints} --list {input.images} {params.data}"
        " --num-classes {params.num_classes} {params.tta} {params.runtime}"
        " --shard {wildcards.shard} --num-shards {wildcards.shards}"
        " --scores {output.scores} --masks {output.masks} > {log} 2>&1"


rule merge_score_shards:
    input:
        scores=lambda wildcards: score_shards(wildcards, ".tsv"),
        masks=lambda wildcards: score_shards(wildcards, ".h5"),
        images=lambda wildcards: split_list(wildcards.experiment, "unlabeled"),
        data=checked_digests("unlabeled"),
    output:
        scores="results/{experiment}/teacher/stability_scores.tsv",
        masks="results/{experiment}/teacher/checkpoint_masks.h5",
    log:
        "logs/{experiment}/teacher/score_stability/merge.log",
    benchmark:
        "benchmarks/{experiment}/teacher/score_stability/merge.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        shards=lambda wildcards: score_shards(wildcards, ""),
    shell:
        "python -m stages.merge_scores --list {input.images} --shards {params.shards}"
        " --scores {output.scores} --masks {output.masks} > {log} 2>&1"


rule split_reliable:
    input:
        scores="results/{experiment}/teacher/stability_scores.tsv",
        # the unlabeled list, or with a review the images it keeps (apply_review)
        images=lambda wildcards: PLAN.pseudo_list(wildcards.experiment),
        data=checked_digests("unlabeled"),
    output:
        reliable="results/{experiment}/stpp_split/reliable_ids.txt",
        unreliable="results/{experiment}/stpp_split/unreliable_ids.txt",
    log:
        "logs/{experiment}/stpp_split/split_reliable.log",
    benchmark:
        "benchmarks/{experiment}/stpp_split/split_reliable.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        ratio=lambda wildcards: exp(wildcards)["stpp"]["reliable_ratio"],
        selection=lambda wildcards: _args(
            selection=exp(wildcards)["stpp"]["selection"], seed=exp(wildcards)["train"]["seed"]
        ),
    shell:
        "python -m stages.split --scores {input.scores} --list {input.images} --ratio {params.ratio}"
        " {params.selection} --reliable {output.reliable} --unreliable {output.unreliable} > {log} 2>&1"
