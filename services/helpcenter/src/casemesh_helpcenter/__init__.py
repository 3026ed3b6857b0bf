"""The self-service help centre: articles, search, guided flows."""
