"""The forecasters and their training: the LSTM, group DRO, bias offsets, LightGBM, tuning,
intervals, and the challenger (the candidates trained and the served one chosen)."""
