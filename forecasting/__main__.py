"""``python -m forecasting`` runs the ``evcast`` CLI."""

from forecasting.cli import main

main()
