"""Ray job: ingestion (parse -> sequences -> vectors) for the configured systems.

    ray job submit --working-dir . -- python ray_jobs/prepare.py --config configs/demo.yaml [key=value ...]
"""
import sys

from fusionlog.cli import main

if __name__ == "__main__":
    sys.exit(main(["prepare", "--quiet", *sys.argv[1:]]))
