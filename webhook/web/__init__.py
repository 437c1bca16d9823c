"""The web layer: blueprints, payload schemas, authentication, errors, the page."""
