"""People's rights over their personal data: erasure by destroying their keys."""
