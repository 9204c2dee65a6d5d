"""Notifications: rules, targets, the durable outbox and delivery (README: Notifications)."""
