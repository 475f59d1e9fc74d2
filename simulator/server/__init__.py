"""The server side: decoding-agnostic aggregation of client updates."""
