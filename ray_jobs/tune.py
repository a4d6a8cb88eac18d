"""Ray job: Ray Tune over the small model (ASHA on the SOURCE-validation metric; no target label is read).

    ray job submit --working-dir . -- python ray_jobs/tune.py --config configs/demo.yaml [tune.num_samples=8 ...]

The search space and ASHA settings are the ``tune`` section of the config. The best values are
written to ``<run.output_dir>/tune/best.yaml`` as a config overrides file; train with them by
giving it as a second config:

    ray job submit --working-dir . -- python ray_jobs/train_small.py --config configs/demo.yaml \\
        --config outputs/demo/tune/best.yaml

Inside a job the outputs land in the job's copy of the working dir unless ``run.output_dir`` is an
absolute path (or shared storage on a cluster); rerunning the same command restores the experiment.
"""
import sys

from fusionlog.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", "--quiet", *sys.argv[1:]]))
