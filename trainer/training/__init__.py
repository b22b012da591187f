"""Training: strategy, inputs, model and optimizer, fit, checkpoints, eval.

`run` is the root of a run; importing this package registers the gin
configurables (`run`, `build_inputs`, `synthetic_data_dir`, `build_model`,
`build_optimizer`).
"""

from trainer.training.checkpointing import EXIT_PREEMPTED
from trainer.training.checkpointing import Preempted
from trainer.training.loop import run
from trainer.training.multi_worker import EXIT_CLUSTER_FAILURE
from trainer.training.strategies import DEFAULT_CLUSTER_TIMEOUT
from trainer.training.strategies import build_strategy
from trainer.training.strategies import STRATEGIES
from trainer.training.strategies import StrategyError

__all__ = ['DEFAULT_CLUSTER_TIMEOUT', 'EXIT_CLUSTER_FAILURE', 'EXIT_PREEMPTED',
           'Preempted', 'run', 'build_strategy', 'STRATEGIES',
           'StrategyError']
