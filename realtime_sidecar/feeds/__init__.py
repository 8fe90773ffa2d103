"""Feeds behind one async interface (``base``): replay (default), Shioaji (live Taiwan ticks),
Polygon websocket (US cross-market proxies)."""
