"""Sales in and made ready: loading, data quality, augmentation, features, windows, `prepare`."""
