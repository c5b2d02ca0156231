"""Engine plug-ins: one package per engine, holding every capability of it.

- :mod:`dbfleet.engines.base`: the ``Engine`` protocol and the capability
  protocols (point-in-time restore, change archives, snapshot kinds, CLI
  commands, and the contracts of the capabilities still to come).
- :mod:`dbfleet.engines.registry`: name -> engine package, the only way the
  rest of dbfleet reaches an engine.
- :mod:`dbfleet.engines.names`: the engine names, a leaf module.
- ``_shared/``: helpers several engines use (tool subprocesses, HTTP urls).

This module imports nothing, so importing ``dbfleet.engines.names`` from the
inventory model pulls in no engine.
"""
