# The built-in synthetic data set (config key `demo`), used by config/config.yaml.


rule make_demo:
    output:
        labeled="resources/demo/labeled.txt",
        unlabeled="resources/demo/unlabeled.txt",
        val="resources/demo/val.txt",
        classes="resources/demo/classes.txt",
    params:
        out=lambda wildcards, output: os.path.dirname(output.labeled),
        demo=config["demo"],
    threads: resources_of("small")["threads"]
    resources:
        mem_mb=resources_of("small")["mem_mb"],
        runtime=resources_of("small")["runtime"],
        gpu=resources_of("small")["gpu"],
    log:
        "logs/demo/make_demo.log",
    benchmark:
        "benchmarks/demo/make_demo.tsv"
    conda:
        "../envs/stpp.yaml"
    shell:
        # --force: Snakemake creates the output folder before the job; make_demo replaces it whole.
        "python -m stages.make_demo --out {params.out} --force --num-labeled {params.demo[num_labeled]}"
        " --num-unlabeled {params.demo[num_unlabeled]} --num-val {params.demo[num_val]}"
        " --size {params.demo[size]} --seed {params.demo[seed]} > {log} 2>&1"
