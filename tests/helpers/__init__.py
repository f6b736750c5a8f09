"""Helpers shared by the test suite: servers, databases, waiting, receivers and app set-ups.

Test modules and conftest.py files import from here; nothing here imports a test module or
a conftest, so no test depends on another test module. Fixtures stay in conftest.py.
"""
