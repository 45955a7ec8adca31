"""Axis bindings: one :class:`~connector.axis.transport.AxisTransport` interface, two adapters.

- :mod:`connector.axis.soap_hub` speaks the provincial eDoc hub's SOAP 1.1 + attachments
  contract (quirks included), built on :mod:`soap_wire` and :mod:`multipart`;
- :mod:`connector.axis.vxp` speaks the national axis's VXP HTTP/JSON protocol, built on
  :mod:`vxp_wire`.

The ``*_wire`` modules and :mod:`multipart` are pure (no sockets): the sandbox server imports
them for the server side, so client and server agree byte for byte.
"""
