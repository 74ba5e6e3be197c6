"""Built-in tasks register themselves on import."""
from .base import TASKS, Experience, Task, TaskSpec, build_task, register_task, task_shape
from .digits import split_digits
from .dynamic import hard_easy, span_range
from .fashion_mnist import read_idx, split_fashion_mnist
from .synthetic import assoc_recall, modular_arithmetic, selective_copy, sorting
from .text import text_classify, text_lm

__all__ = [
    "TASKS", "Experience", "Task", "TaskSpec", "build_task", "register_task", "task_shape",
    "split_digits", "split_fashion_mnist", "read_idx",
    "assoc_recall", "selective_copy", "sorting", "modular_arithmetic", "text_lm", "text_classify",
    "span_range", "hard_easy",
]
