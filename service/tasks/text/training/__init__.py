"""The text-classification task's training side (torch): a BERT-family encoder with a linear
head, its first version from seed texts, and a fine-tune job's candidate."""

from service.tasks.text.training._build import build_first_version
from service.tasks.text.training._job import train_candidate

__all__ = ["build_first_version", "train_candidate"]
