"""Cheaper tiny in-process trainings (a test's setup): Keras' steps run eagerly.

A training of a few products for one epoch spends most of its CPU tracing Keras'
`tf.function`s (train, test and predict steps, traced again for each new model and input
shape), not training: about 4 of the 12 CPU seconds of a two-partition run. Run eagerly,
the same layers, losses, optimiser steps and group-DRO updates execute op by op, with the
same results up to float rounding. Graph mode stays covered: by every trainer test that
does not use this, and by the tests whose trainings run in task subprocesses.

A partitioned run calls `gc.collect()` after its tuning and after each partition
(`trainer.run.partitioned.release_memory`); that those collections do not re-walk what
pytest and TensorFlow loaded is the session's business: tests/conftest.py freezes it
(`gc.freeze`) once collection ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def eager_keras() -> Iterator[None]:
    """`tf.function`s run eagerly inside the block; the previous setting is restored."""
    import tensorflow as tf

    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)
