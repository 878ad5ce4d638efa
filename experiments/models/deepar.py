"""DeepAR (Salinas et al. 2020) from GluonTS, PyTorch backend, on the CPU.

One global autoregressive LSTM over all products, with a negative-binomial output (the
sales are counts with many zeros), the product as a static categorical feature, the
promotion flag as a dynamic real feature known in advance, and GluonTS's default daily
lags and time features. Trained afresh at every cutoff on the history only; the point
forecast is the mean of `num_samples` sample paths.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.models.base import Forecast, ForecastTask


@dataclass
class DeepAR:
    """GluonTS `DeepAREstimator` (torch) with a negative-binomial likelihood."""

    context_length: int = 56
    hidden_size: int = 40
    num_layers: int = 2
    max_epochs: int = 30
    num_batches_per_epoch: int = 50
    batch_size: int = 64
    learning_rate: float = 1e-3
    num_samples: int = 100
    num_threads: int = 2
    seed: int = 0
    name: str = "deepar"

    def forecast(self, task: ForecastTask) -> Forecast:
        """Train DeepAR on the history and return the sample mean per product and day."""
        import lightning.pytorch as pl
        import pandas as pd
        import torch

        for noisy in ("lightning", "lightning.pytorch", "pytorch_lightning", "gluonts"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        torch.set_num_threads(self.num_threads)
        pl.seed_everything(self.seed, verbose=False)

        hist = task.history
        start = pd.Period(hist.dates[0], freq="D")
        units = hist.filled
        promo_all = np.vstack([hist.promo, task.future_promo])
        n = units.shape[1]
        t_hist = units.shape[0]

        def entries(with_future: bool) -> list[dict[str, Any]]:
            length = t_hist + (task.horizon if with_future else 0)
            return [
                {
                    "start": start,
                    "target": units[:, j].astype(np.float32),
                    "feat_dynamic_real": promo_all[:length, j][None, :].astype(np.float32),
                    "feat_static_cat": [j],
                    "item_id": hist.products[j],
                }
                for j in range(n)
            ]

        with tempfile.TemporaryDirectory(prefix="deepar-") as workdir:
            return self._fit_predict(task, entries, workdir, n)

    def _fit_predict(
        self,
        task: ForecastTask,
        entries: Callable[[bool], list[dict[str, Any]]],
        workdir: str,
        n: int,
    ) -> Forecast:
        from gluonts.dataset.common import ListDataset
        from gluonts.torch.distributions import NegativeBinomialOutput
        from gluonts.torch.model.deepar import DeepAREstimator

        estimator = DeepAREstimator(
            freq="D",
            prediction_length=task.horizon,
            context_length=self.context_length,
            num_layers=self.num_layers,
            hidden_size=self.hidden_size,
            lr=self.learning_rate,
            num_feat_dynamic_real=1,
            num_feat_static_cat=1,
            cardinality=[n],
            distr_output=NegativeBinomialOutput(),
            num_parallel_samples=self.num_samples,
            batch_size=self.batch_size,
            num_batches_per_epoch=self.num_batches_per_epoch,
            trainer_kwargs={
                "max_epochs": self.max_epochs,
                "accelerator": "cpu",
                "devices": 1,
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "logger": False,
                # GluonTS keeps the best epoch through a checkpoint: write it to a temp dir.
                "default_root_dir": workdir,
            },
        )
        predictor = estimator.train(ListDataset(entries(False), freq="D"), cache_data=True)
        forecasts = list(predictor.predict(ListDataset(entries(True), freq="D")))
        values = np.column_stack([f.mean for f in forecasts])
        if values.shape != (task.horizon, n):
            raise ValueError(f"DeepAR returned {values.shape}, expected {(task.horizon, n)}")
        return Forecast(values=np.clip(values, 0.0, None), notes={"epochs": self.max_epochs})
