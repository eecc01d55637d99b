"""`wandb-source load` from a checkout: `python pipelines/wandb_pipeline.py --help` (the package from this checkout, no install
needed; configuration from `.dlt/` in the current folder, as for every dlt pipeline)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's wandb_source

from wandb_source.cli.load import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
