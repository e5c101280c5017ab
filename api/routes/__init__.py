"""The API's routes, one blueprint per subject."""
