"""Mini-batches of one or several tasks, transformed on the training device.

Samples stay uint8 in their tasks' tensors; a batch is gathered by index, moved to the device, and transformed there
by its task's :class:`BatchTransform` (one call per task present in the batch).
"""
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import torch

from dataloaders.splits import TaskData
from dataloaders.transforms import ready_inputs


class TaskLoader:
    """Iterates ``(inputs, targets, task_names)`` over the samples of ``tasks``.

    ``inputs`` are float32 (B, C, H, W) and ``targets`` int64 (B,), both on ``device``; ``task_names`` lists each
    sample's task name. Several tasks are concatenated (offline / joint training). With ``shuffle`` the order is
    ``torch.randperm(n, generator=generator)``, drawn anew every epoch; the same generator drives the augmentation
    draws.
    """

    def __init__(self, tasks: Union[TaskData, Sequence[TaskData]], batch_size: int, shuffle: bool,
                 device: Union[torch.device, str] = "cpu", generator: Optional[torch.Generator] = None,
                 drop_last: bool = False) -> None:
        self.tasks = [tasks] if isinstance(tasks, TaskData) else list(tasks)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.device = torch.device(device)
        self.generator = generator
        self.drop_last = drop_last
        self.task_of_sample = torch.cat([torch.full((len(task),), index, dtype=torch.int64)
                                         for index, task in enumerate(self.tasks)])
        self.index_in_task = torch.cat([torch.arange(len(task)) for task in self.tasks])
        self.targets = torch.cat([task.targets for task in self.tasks])

    def __len__(self) -> int:
        """Number of batches per epoch: ⌈n / B⌉, or ⌊n / B⌋ with ``drop_last``."""
        num_samples = len(self.targets)
        return num_samples // self.batch_size if self.drop_last else -(-num_samples // self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.targets)

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor, List[str]]]:
        num_samples = self.num_samples
        order = torch.randperm(num_samples, generator=self.generator) if self.shuffle else torch.arange(num_samples)
        for batch in range(len(self)):
            yield self.samples(order[batch * self.batch_size:(batch + 1) * self.batch_size])

    def with_inputs(self, extra: Sequence[Tuple[str, torch.Tensor, torch.Tensor]]) -> "TaskLoader":
        """The same loader over ``extra`` samples, given as ``(task name, network inputs, targets)`` (a rehearsal
        memory: transformed already, they are used as they are), followed by this loader's own. Like every task's
        samples they are held on the CPU (copied there once, from wherever they are) and batches go to ``device``."""
        memory = [TaskData(name, inputs.cpu(), targets.cpu(), ready_inputs) for name, inputs, targets in extra]
        return TaskLoader(memory + self.tasks, self.batch_size, self.shuffle, self.device, self.generator,
                          self.drop_last)

    def samples(self, samples: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
        """The samples of the given global indices as a batch: gathered, moved and transformed, task by task.

        Nothing here waits for the device: the copies to it do not block (``non_blocking``; from pageable memory
        CUDA stages the data before returning, so the CPU tensors may go at once)."""
        task_of_sample = self.task_of_sample[samples]
        inputs = None
        for task_index in task_of_sample.unique().tolist():
            task = self.tasks[task_index]
            positions = (task_of_sample == task_index).nonzero().squeeze(1)
            images = task.images[self.index_in_task[samples[positions]]].to(self.device, non_blocking=True)
            transformed = task.transform(images, generator=self.generator)
            if inputs is None:
                inputs = transformed.new_empty((len(samples), *transformed.shape[1:]))
            inputs[positions.to(self.device, non_blocking=True)] = transformed
        if inputs is None:  # no samples
            inputs = torch.empty(0, device=self.device)
        targets = self.targets[samples].to(self.device, non_blocking=True)
        task_names = [self.tasks[index].name for index in task_of_sample.tolist()]
        return inputs, targets, task_names
