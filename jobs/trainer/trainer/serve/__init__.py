"""Serving: which forecaster serves and its forecasts (`forecast`); run artifacts (`artifacts`)."""
