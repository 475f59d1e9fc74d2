"""The results-document scripts (docs/RESULTS.md, `make results`): not part of the installed
package; they read run directories through `analysis` only."""
