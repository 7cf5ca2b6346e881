# The review: what a user who read the audit excludes or corrects (config key review), applied
# to the students' training sets, and the review sheet to decide it from. See docs/review.md.


rule apply_review:
    input:
        unpack(inputs("apply_review")),
        # the review's contents, checked: an edited exclusion or mask re-runs this and the students
        data=checked_digests("unlabeled", "review"),
    output:
        **outputs("apply_review"),
    log:
        L.log_path("apply_review"),
    benchmark:
        L.benchmark_path("apply_review")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        settings=settings("apply_review"),
    shell:
        "python -m stages.review --unlabeled {input.images} {params.settings}"
        " --kept {output.kept} --corrected {output.corrected} --corrected-masks {output.masks} > {log} 2>&1"


rule review_sheet:
    input:
        unpack(inputs("review_sheet")),
        data=checked_digests("unlabeled"),
    output:
        **outputs("review_sheet", sheet=directory),
    log:
        L.log_path("review_sheet"),
    benchmark:
        L.benchmark_path("review_sheet")
    conda:
        "../envs/stpp.yaml"
    threads: resources_of("small")["threads"]
    resources:
        **job_resources("small"),
    params:
        settings=settings("review_sheet"),
        inputs=input_args("review_sheet", "images"),
    shell:
        "python -m stages.review_sheet --list {input.images} {params.inputs} {params.settings}"
        " --out {output.sheet} > {log} 2>&1"
