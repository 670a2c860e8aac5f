"""evcast: forecasts of EV charging demand, solar and grid headroom for charging sites."""
