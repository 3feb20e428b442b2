"""``python -m service.training.job SPEC.json``: run one fine-tune job (see ``_finetune``)."""

from __future__ import annotations

import sys

from service.training._finetune import run_job

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m service.training.job SPEC.json")
    run_job(sys.argv[1])
