"""Connector to Vietnam's national electronic-document axis (edXML, QCVN 102:2016)."""

__version__ = "0.1.0"
