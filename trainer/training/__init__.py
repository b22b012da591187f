"""Training: typed config, cluster, inputs, model, fit, checkpoints, eval.

`run(config, cluster, model_dir)` is the root of a run; nothing here reads
gin (`trainer.configure` makes the config from gin files).
"""

from trainer.training.cluster import Cluster
from trainer.training.cluster import DEFAULT_CLUSTER_TIMEOUT
from trainer.training.cluster import EXIT_CLUSTER_FAILURE
from trainer.training.cluster import STRATEGIES
from trainer.training.cluster import StrategyError
from trainer.training.config import ExperimentConfig
from trainer.training.config import InputsConfig
from trainer.training.config import ModelConfig
from trainer.training.config import OptimizerConfig
from trainer.training.config import RunConfig
from trainer.training.loop import run
from trainer.training.preemption import EXIT_PREEMPTED
from trainer.training.preemption import Preempted

__all__ = ['Cluster', 'DEFAULT_CLUSTER_TIMEOUT', 'EXIT_CLUSTER_FAILURE',
           'EXIT_PREEMPTED', 'ExperimentConfig', 'InputsConfig',
           'ModelConfig', 'OptimizerConfig', 'Preempted', 'RunConfig',
           'STRATEGIES', 'StrategyError', 'run']
