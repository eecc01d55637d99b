"""A local W&B server for tests, the demo and benchmarks (see README, "The W&B emulator")."""

from .faults import FaultRule, Faults
from .generator import DatasetSpec, generate, run_id_for
from .server import DEFAULT_API_KEY, Emulator
from .store import Run, RunHistory, Store

__all__ = ["DEFAULT_API_KEY", "DatasetSpec", "Emulator", "FaultRule", "Faults", "Run", "RunHistory",
           "Store", "generate", "run_id_for"]
