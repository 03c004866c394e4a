"""Outputs: forward every stored event, at least once, to files, collectors and SIEMs.

One registry and one base (base.py), one module per destination (a noun, after the protocol
or service), one delivery loop (delivery.py, on the store consumer loop of consumer.py), and
the formats in formats/. docs/forward.md is the user's guide.
"""

from auditsink.forward.base import (
    FORMATS,
    OUTPUTS,
    DeliveryError,
    Doc,
    Output,
    OutputConfig,
    OutputConfigError,
    Record,
    Rejection,
    build_output,
    parse_forward,
    parse_output,
)
from auditsink.forward.delivery import Forwarder

__all__ = ["FORMATS", "OUTPUTS", "DeliveryError", "Doc", "Forwarder", "Output", "OutputConfig",
           "OutputConfigError", "Record", "Rejection", "build_output", "parse_forward",
           "parse_output"]
