"""Types that cross package and process boundaries: the leaf every other package may import.

Nothing here imports another ``service`` package except :mod:`service.errors`, so the store, the
registry, training and the api can share these types without importing each other.
"""
