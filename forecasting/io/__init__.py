"""Adapters: the only code that reads or writes stores and services."""
