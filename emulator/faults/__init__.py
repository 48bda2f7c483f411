"""Fault injection: a fault-injecting TCP proxy, scenario timelines, power loss."""
