"""Ray job: FusionLog ablations and the tau sweep on one pair (experiments/ablations.py) -> docs/ablations.md.

    ray job submit --working-dir . -- python ray_jobs/ablations.py --config configs/demo.yaml teacher.kind=keyword
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout root: experiments/ lives there

from experiments.ablations import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
