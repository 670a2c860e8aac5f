"""Publication core (pure): the run contract, served targets, documents, OCPP profiles."""
