"""Placeholder until the rules land."""

rules = ()
