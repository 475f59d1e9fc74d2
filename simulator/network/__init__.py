"""Links between clients and the server: capacity traces, generators, per-client links."""
