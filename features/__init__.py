"""Pure polars feature code: demand series, calendar, lags, weather and solar geometry."""
