"""Judging forecasts: metrics and baselines (`evaluate`) and the promotion rule (`promotion`)."""
