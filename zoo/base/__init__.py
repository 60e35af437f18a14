"""The bottom layer: errors, file helpers and the parsing of typed text. It knows no plugin and no model."""
