# The review: what a user who read the audit excludes or corrects (config key review), applied
# to the students' training sets, and the review sheet to decide it from. See docs/review.md.


rule apply_review:
    input:
        images=lambda wildcards: split_list(wildcards.experiment, "unlabeled"),
        # the review's contents, checked: an edited exclusion or mask re-runs this and the students
        data=checked_digests("unlabeled", "review"),
    output:
        kept="results/{experiment}/review/kept_ids.txt",
        corrected="results/{experiment}/review/corrected_ids.txt",
        masks="results/{experiment}/review/corrected_masks.h5",
    log:
        "logs/{experiment}/review/apply_review.log",
    benchmark:
        "benchmarks/{experiment}/review/apply_review.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        review=lambda wildcards: _args(
            exclude=exp(wildcards)["review"]["exclude"], masks=exp(wildcards)["review"]["masks"]
        ),
        labels=lambda wildcards: _args(
            num_classes=exp(wildcards)["data"]["num_classes"], ignore_labels=exp(wildcards)["data"]["ignore_labels"]
        ),
    shell:
        "python -m stages.review --unlabeled {input.images} {params.review} {params.labels}"
        " --kept {output.kept} --corrected {output.corrected} --corrected-masks {output.masks} > {log} 2>&1"


rule review_sheet:
    input:
        images=lambda wildcards: split_list(wildcards.experiment, "unlabeled"),
        teacher_masks="results/{experiment}/teacher/pseudo_masks_unlabeled.h5",
        scores="results/{experiment}/teacher/stability_scores.tsv",
        reliable="results/{experiment}/stpp_split/reliable_ids.txt",
        audit="results/{experiment}/audit/audit.json",
        data=checked_digests("unlabeled"),
    output:
        directory("results/{experiment}/review_sheet"),
    log:
        "logs/{experiment}/review/review_sheet.log",
    benchmark:
        "benchmarks/{experiment}/review/review_sheet.tsv"
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        data=data_args,
        class_names=lambda wildcards: shlex.join(class_names(wildcards)),
        palette=lambda wildcards: exp(wildcards)["data"]["palette"],
        size=lambda wildcards: exp(wildcards)["review"]["sheet_size"],
    shell:
        "python -m stages.review_sheet --list {input.images} --teacher-masks {input.teacher_masks}"
        " --scores {input.scores} --reliable {input.reliable} --audit {input.audit} {params.data}"
        " --class-names {params.class_names} --palette {params.palette} --size {params.size}"
        " --out {output} > {log} 2>&1"
