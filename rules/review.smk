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
