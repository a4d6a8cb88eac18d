"""Ray job: the small model (GRU + attention, domain-adversarial meta-learning) on Ray Train.

    ray job submit --working-dir . -- python ray_jobs/train_small.py --config configs/demo.yaml [key=value ...]

Reads the prepared data in ``data.output_dir`` (run ``ray_jobs/prepare.py`` first). With a Tune
result, add its overrides file: ``--config outputs/demo/tune/best.yaml``. Rerunning the same
command resumes the run from its last checkpoint (the run name comes from the config).
"""
import sys

from fusionlog.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-small", "--quiet", *sys.argv[1:]]))
