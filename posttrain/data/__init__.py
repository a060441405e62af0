"""Data layer: canonical records, streaming I/O, outside formats, the data doctor.

Public functions a notebook can call the same way the CLI does.
"""

from posttrain.data.io import read_rows, write_records
from posttrain.data.records import validate_conversation

__all__ = ["read_rows", "write_records", "validate_conversation"]
