"""Belfry's shared library: settings, logging, contracts, broker, database and probes.

Every service imports from here; business rules stay in the services.
"""

__version__ = "0.1.0"
