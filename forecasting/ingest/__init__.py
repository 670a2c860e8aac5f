"""Readers of real source formats, validation rules and quarantine.

Readers are pure: they turn one input file into accepted rows in a canonical schema plus
quarantined rows with a reason. Storing them is the job of :mod:`forecasting.io`.
"""
