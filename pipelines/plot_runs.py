"""`wandb-source plot` from a checkout: `python pipelines/plot_runs.py --help` (the package from this checkout, no install
needed; configuration from `.dlt/` in the current folder, as for every dlt pipeline)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's wandb_source

from wandb_source.cli.plot import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
