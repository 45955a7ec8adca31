"""Routing between the connector and local document-management systems (DMS).

- :mod:`.config`: the ``[routing]`` configuration (destinations, rules, default, intake);
- :mod:`.rules`: the pure routing decision (:class:`~.rules.Router`);
- :mod:`.delivery`: the delivery interface, with one adapter per file: :mod:`.folder_delivery`,
  :mod:`.webhook_delivery`, :mod:`.sql_delivery`;
- intake of outbound documents and status reports: :mod:`.folder_intake`, :mod:`.http_intake`
  (checks shared in :mod:`.intake_checks`, status reports in :mod:`.status_report`).

May import :mod:`connector.edxml` and :mod:`connector.httpserver`; never the engine, store,
axis or daemon.
"""
