"""The sample shop: the code the demo's tasks change, and its tests."""
