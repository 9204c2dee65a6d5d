"""SubscribeErrors: the hub that fans committed captures out to subscribers."""
