"""Keras' steps run eagerly for a tiny in-process training (a test's setup).

A training of a few products for one epoch spends most of its CPU tracing Keras'
`tf.function`s (train, test and predict steps, traced again for each new model and input
shape), not training: about 4 of the 12 CPU seconds of a two-partition run. Run eagerly,
the same layers, losses, optimiser steps and group-DRO updates execute op by op, with the
same results up to float rounding. Graph mode stays covered: by every trainer test that
does not use this, and by the tests whose trainings run in task subprocesses.
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
