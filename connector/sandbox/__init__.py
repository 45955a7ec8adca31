"""A local axis for development, demos, tests and rehearsals: one process playing a provincial
hub (SOAP 1.1 + attachments at ``/soap``, WSDL at ``/soap?wsdl``) and the national axis (VXP
under ``/vxp/``), sharing one durable store, so a document sent on either binding reaches its
recipients on either, and statuses likewise.

- :mod:`.store`: SQLite (WAL) rows + edXML files on disk; survives restarts;
- :mod:`.hub_app`, :mod:`.vxp_app`: the two bindings, built on the client's own wire modules
  (:mod:`connector.axis.soap_wire`, :mod:`connector.axis.multipart`, :mod:`connector.axis.vxp_wire`);
- :mod:`.faults`: latency, failure share, dropped connections, outage window (``/admin/faults``);
- :mod:`.app`: routing and the core both bindings share; :mod:`.server`: the threaded server.

Run it: ``python cli.py sandbox --port 8080 --data ./sandbox-data`` (see
:mod:`connector.cli.sandbox_command`); in tests: ``with SandboxServer(tmp_path) as sandbox: ...``.
"""

from .server import SandboxServer

__all__ = ["SandboxServer"]
