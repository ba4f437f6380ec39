"""netstate: event-sourced host-side container networking.

The public API lives in `netstate.service`; `netstate.bootstrap.open_service` builds one.
Importing this package performs no I/O and loads neither SQLAlchemy nor a kernel library.
"""

__version__ = "0.1.0"
