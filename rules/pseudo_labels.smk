# Stages 2-4 and 6: TTA pseudo-labels, stability scores, the reliable/unreliable split, and
# relabeling with a student. One `label_shard` job per shard (config label.shards), merged.


rule label_shard:
    input:
        model="results/{experiment}/{model}/model.pt",
        images=labeling_list,
        # a changed unlabeled image re-runs the merge (below), which needs the shards again
        data=checked_digests("unlabeled", wait_only=True),
    output:
        temp("results/{experiment}/{model}/pseudo_masks_{subset}.shards/shard_{shard}_of_{shards}.h5"),
    params:
        weights=labeling_weights,
        data=lambda wildcards: data_args(wildcards, labels=False),
        classes=lambda wildcards: exp(wildcards)["data"]["num_classes"],
        tta=tta_args,
        runtime=lambda wildcards, threads: runtime_args(threads, exp(wildcards)["label"]["batch_size"]),
    threads: resources_of("label")["threads"]
    resources:
        mem_mb=resources_of("label")["mem_mb"],
        runtime=resources_of("label")["runtime"],
        gpu=resources_of("label")["gpu"],
    log:
        "logs/{experiment}/{model}/label_{subset}/shard_{shard}_of_{shards}.log",
    benchmark:
        "benchmarks/{experiment}/{model}/label_{subset}/shard_{shard}_of_{shards}.tsv"
    conda:
        "../envs/stpp.yaml"
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
    threads: resources_of("small")["threads"]
    resources:
        mem_mb=resources_of("small")["mem_mb"],
        runtime=resources_of("small")["runtime"],
        gpu=resources_of("small")["gpu"],
    log:
        "logs/{experiment}/{model}/label_{subset}/merge.log",
    benchmark:
        "benchmarks/{experiment}/{model}/label_{subset}/merge.tsv"
    conda:
        "../envs/stpp.yaml"
    shell:
        "python -m stages.merge_masks --out {output} {input.shards} > {log} 2>&1"


rule score_stability:
    input:
        checkpoints="results/{experiment}/teacher/checkpoints",
        model="results/{experiment}/teacher/model.pt",
        images=lambda wildcards: split_list(wildcards.experiment, "unlabeled"),
        data=checked_digests("unlabeled"),
    output:
        scores="results/{experiment}/teacher/stability_scores.tsv",
        masks="results/{experiment}/teacher/checkpoint_masks.h5",
    params:
        checkpoints=teacher_checkpoints,
        num_classes=lambda wildcards: exp(wildcards)["data"]["num_classes"],
        data=lambda wildcards: data_args(wildcards, labels=False),
        tta=lambda wildcards: tta_args(wildcards, tta=exp(wildcards)["stpp"]["score_tta"]),
        runtime=lambda wildcards, threads: runtime_args(threads, exp(wildcards)["label"]["batch_size"]),
    threads: resources_of("score")["threads"]
    resources:
        mem_mb=resources_of("score")["mem_mb"],
        runtime=resources_of("score")["runtime"],
        gpu=resources_of("score")["gpu"],
    log:
        "logs/{experiment}/teacher/score_stability.log",
    benchmark:
        "benchmarks/{experiment}/teacher/score_stability.tsv"
    conda:
        "../envs/stpp.yaml"
    shell:
        "python -m stages.score --checkpoints {params.checkpoints} --list {input.images} {params.data}"
        " --num-classes {params.num_classes} {params.tta} {params.runtime}"
        " --scores {output.scores} --masks {output.masks} > {log} 2>&1"


rule split_reliable:
    input:
        scores="results/{experiment}/teacher/stability_scores.tsv",
        images=lambda wildcards: split_list(wildcards.experiment, "unlabeled"),
        data=checked_digests("unlabeled"),
    output:
        reliable="results/{experiment}/stpp_split/reliable_ids.txt",
        unreliable="results/{experiment}/stpp_split/unreliable_ids.txt",
    params:
        ratio=lambda wildcards: exp(wildcards)["stpp"]["reliable_ratio"],
        selection=lambda wildcards: _args(selection=exp(wildcards)["stpp"]["selection"], seed=exp(wildcards)["train"]["seed"]),
    threads: resources_of("small")["threads"]
    resources:
        mem_mb=resources_of("small")["mem_mb"],
        runtime=resources_of("small")["runtime"],
        gpu=resources_of("small")["gpu"],
    log:
        "logs/{experiment}/stpp_split/split_reliable.log",
    benchmark:
        "benchmarks/{experiment}/stpp_split/split_reliable.tsv"
    conda:
        "../envs/stpp.yaml"
    shell:
        "python -m stages.split --scores {input.scores} --list {input.images} --ratio {params.ratio}"
        " {params.selection} --reliable {output.reliable} --unreliable {output.unreliable} > {log} 2>&1"
