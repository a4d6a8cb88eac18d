"""Ray job: the evaluation suite (all transfer pairs x methods x seeds) -> docs/results.md + PNG.

    ray job submit --working-dir . -- python ray_jobs/evaluate_suite.py --suite configs/suite.yaml [key=value ...]
"""
import sys

from fusionlog.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--suite" not in args:
        args = ["--suite", "configs/suite.yaml", *args]
    sys.exit(main(["evaluate", "--quiet", *args]))
