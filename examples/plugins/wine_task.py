"""A task of your own: scikit-learn's wine data as a class-incremental stream.

13 chemical measurements per wine become 13 tokens of dimension 1; the 3 cultivars
arrive as experiences {0, 1} then {2}. Registered on import, so
`plugins: [wine_task.py]` or `--plugin wine_task.py` makes `task: {name: split_wine}` work.
"""
import torch
from sklearn.datasets import load_wine

from search_space.arch import TaskShape
from trainers.tasks import Task, register_task
from trainers.tasks.images import class_groups, class_incremental, standardise, stratified_split


def wine_shape(classes_per_experience: int = 2) -> TaskShape:
    return TaskShape(seq_len=13, num_classes=3, input_dim=1)


@register_task("split_wine", shape=wine_shape, description="sklearn wine, 13 tokens, 3 classes in 2 experiences")
def split_wine(seed: int = 0, classes_per_experience: int = 2) -> Task:
    data = load_wine()
    x = torch.as_tensor(data.data, dtype=torch.float32).unsqueeze(-1)   # (178, 13, 1)
    y = torch.as_tensor(data.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    train, val, test = stratified_split(y, (0.2, 0.2), g)                 # 60/20/20 per class
    x_train, x_val, x_test = standardise(x[train], x[val], x[test])       # train statistics only
    splits = {"train": (x_train, y[train]), "val": (x_val, y[val]), "test": (x_test, y[test])}
    groups = class_groups(3, classes_per_experience, shuffle=False, generator=g)
    return Task("split_wine", wine_shape(classes_per_experience), class_incremental(splits, groups))
