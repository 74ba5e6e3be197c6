"""A task of your own: scikit-learn's wine data as a class-incremental stream.

13 chemical measurements per wine become 13 tokens of dimension 1; the 3 cultivars
arrive as experiences {0, 1} then {2}. Registered on import, so
`plugins: [wine_task.py]` or `--plugin wine_task.py` makes `task: {name: split_wine}` work.
"""
import torch
from sklearn.datasets import load_wine

from dynas.search_space.arch import TaskShape
from dynas.trainers.tasks import Task, register_task
from dynas.trainers.tasks.images import class_groups, class_incremental, stratified_split
from dynas.trainers.tasks.preprocessing import Features


def wine_shape(classes_per_experience: int = 2) -> TaskShape:
    return TaskShape(seq_len=13, num_classes=3, input_dim=1)


@register_task("split_wine", shape=wine_shape, description="sklearn wine: 13 tokens, 3 classes, 2 experiences")
def split_wine(seed: int = 0, classes_per_experience: int = 2) -> Task:
    data = load_wine()
    x = torch.as_tensor(data.data, dtype=torch.float32)                  # (178, 13) raw
    y = torch.as_tensor(data.target, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    train, val, test = stratified_split(y, (0.2, 0.2), g)                 # 60/20/20 per class
    prep = Features.fit(x[train])                                        # train statistics only
    splits = {"train": (prep(x[train]), y[train]), "val": (prep(x[val]), y[val]), "test": (prep(x[test]), y[test])}
    groups = class_groups(3, classes_per_experience, shuffle=False, generator=g)
    return Task("split_wine", wine_shape(classes_per_experience),
                class_incremental(splits, groups, raw_test=x[test]), preprocessing=prep)
