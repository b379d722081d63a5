"""A faithful local stand-in for the TalentLMS v1 REST API (see its README)."""
