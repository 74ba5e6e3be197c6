"""What can be built: experiment files, search spaces, architectures and their cost.

The lightest layer: standard library and PyYAML only (no torch), so controllers and
analysis tools can read spaces, archs and costs anywhere.
"""
from .arch import (ArchConfig, AttentionConfig, FFNConfig, LayerConfig, RouterConfig,
                   TaskShape)
from .base import Assignment, Candidate, Space
from .constraints import is_feasible, sample_feasible
from .cost import Cost, estimate_cost
from .errors import ConfigError, DynasError, InfeasibleError
from .experiment import Experiment, load_experiment, parse_experiment
from .kinds import KindSpec, register_attention, register_ffn, register_router
from .plain import DecisionSpace
from .space import ArchSpace, condition_holds, parse_space
from .suggest import Decision, FixedSuggester, RandomSuggester, RecordingSuggester, Suggester

__all__ = [
    "ArchConfig", "LayerConfig", "AttentionConfig", "FFNConfig", "RouterConfig", "TaskShape",
    "Space", "Candidate", "Assignment", "ArchSpace", "DecisionSpace", "parse_space",
    "condition_holds", "Decision",
    "Experiment", "load_experiment", "parse_experiment",
    "Cost", "estimate_cost", "is_feasible", "sample_feasible",
    "KindSpec", "register_attention", "register_ffn", "register_router",
    "Suggester", "RandomSuggester", "FixedSuggester", "RecordingSuggester",
    "DynasError", "ConfigError", "InfeasibleError",
]
