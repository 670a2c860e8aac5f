"""Forecasting models: charging demand (LightGBM), solar (pvlib), and baselines."""
