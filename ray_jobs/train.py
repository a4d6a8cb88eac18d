"""Ray job: the whole FusionLog pipeline (prepare -> route -> small model -> distill) to a fused artifact.

    ray job submit --working-dir . -- python ray_jobs/train.py --config configs/demo.yaml [--skip-prepare] [key=value ...]
"""
import sys

from fusionlog.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", "--quiet", *sys.argv[1:]]))
