"""Ray job: score a model artifact on the target's labels (the only place target labels are read).

    ray job submit --working-dir . -- python ray_jobs/evaluate.py --config configs/demo.yaml [--artifact DIR] [key=value ...]

``--artifact`` defaults to ``<run.output_dir>/fused``; a path relative to the working dir is read
inside the job's copy of it, so give an absolute path for artifacts written outside the repo.
"""
import sys

from fusionlog.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", "--quiet", *sys.argv[1:]]))
