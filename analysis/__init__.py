"""Analysis: run directories -> pandas frames -> metrics, plots and reports."""
