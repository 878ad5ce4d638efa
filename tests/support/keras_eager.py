"""Cheaper tiny in-process trainings (a test's setup): Keras' steps run eagerly, and the
test process's heap is frozen out of the garbage collector's reach.

A training of a few products for one epoch spends most of its CPU tracing Keras'
`tf.function`s (train, test and predict steps, traced again for each new model and input
shape), not training: about 4 of the 12 CPU seconds of a two-partition run. Run eagerly,
the same layers, losses, optimiser steps and group-DRO updates execute op by op, with the
same results up to float rounding. Graph mode stays covered: by every trainer test that
does not use this, and by the tests whose trainings run in task subprocesses.

A partitioned run calls `gc.collect()` after its tuning and after each partition
(`trainer.run.partitioned.release_memory`); in a pytest process, each full collection
walks everything pytest, TensorFlow and the other test modules have allocated (about
0.3 s a call). `frozen_heap` moves what exists before the run into the collector's
permanent generation (`gc.freeze`) for the run's duration: the collections still run and
free the cycles the run itself makes; they no longer re-walk the test process.
"""

from __future__ import annotations

import gc
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


@contextmanager
def frozen_heap() -> Iterator[None]:
    """The objects alive at the start are left out of garbage collections inside the
    block (`gc.freeze`); afterwards they are collectable again (`gc.unfreeze`). Inside
    a pytest session that froze what its collection loaded (tests/conftest.py), the
    block changes nothing: unfreezing would thaw the session's freeze too, and freezing
    more would keep the earlier tests' models (cycles) from ever being collected."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
