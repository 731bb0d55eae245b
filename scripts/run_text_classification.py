#!/usr/bin/env python
"""Fine-tune a sequence classifier on CSV/TSV/JSON(L) files, in the spirit of Transformers' run_glue.py.

    python scripts/run_text_classification.py configs/minilm_text_classification.yaml \
        --train_file train.csv --validation_file dev.csv --training.learning_rate 1e-4

The same as `fxformers train CONFIG.yaml [--key value ...]`.
"""

import json
import logging
import sys

from fxformers.training.recipes import train_from_config

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(json.dumps(train_from_config(sys.argv[1], sys.argv[2:]), indent=2))
